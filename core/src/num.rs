//! Integer conversions the formats need, without silent truncation.
//!
//! Sizes on disk are `u64`; buffers and slices are indexed by `usize`. On the 64-bit targets
//! Slate runs on every `u64` fits; on a 32-bit target a size past `usize::MAX` saturates, so the
//! allocation or slice it feeds fails loudly instead of wrapping to a small, wrong number.

/// `x` as a `usize`, saturating.
pub fn usize_of(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

/// `x` as a `u32`, saturating (for fields whose range the caller has checked).
pub fn u32_of(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(usize_of(7), 7);
        assert_eq!(u32_of(u64::from(u32::MAX) + 1), u32::MAX);
        assert_eq!(u32_of(12), 12);
    }
}
