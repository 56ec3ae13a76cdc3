//! Reading a service's output line by line with a bound on memory: PID 1 copies every
//! service's output to the console and to /data, and a service that prints megabytes without a
//! newline must not make PID 1 buffer them (or die trying). Lines longer than the cap are
//! passed on in pieces of the cap; nothing is dropped.

use std::io::{self, BufRead};

/// Bytes of one line PID 1 holds at most before passing it on.
pub const MAX_LINE: usize = 8 * 1024;

/// Reads the next line (without its newline) into `out`, at most `cap` bytes of it; the rest
/// of a longer line comes with the next calls. Returns false at the end of the stream with
/// nothing read.
pub fn next_line<R: BufRead>(r: &mut R, out: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
    out.clear();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(!out.is_empty());
        }
        let room = cap.saturating_sub(out.len());
        let window = &buf[..buf.len().min(room)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&window[..i]);
            r.consume(i + 1);
            return Ok(true);
        }
        let n = window.len();
        out.extend_from_slice(window);
        r.consume(n);
        if out.len() >= cap {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], cap: usize) -> Vec<Vec<u8>> {
        let mut r = io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        let mut line = Vec::new();
        while next_line(&mut r, &mut line, cap).unwrap() {
            out.push(line.clone());
        }
        out
    }

    #[test]
    fn lines_split_at_newlines_and_long_ones_in_pieces() {
        assert_eq!(all(b"a\nbc\n", 10), vec![b"a".to_vec(), b"bc".to_vec()]);
        assert_eq!(all(b"a\nlast", 10), vec![b"a".to_vec(), b"last".to_vec()]);
        assert_eq!(all(b"", 10), Vec::<Vec<u8>>::new());
        assert_eq!(all(b"\n\n", 10), vec![Vec::<u8>::new(), Vec::new()]);
        let long = vec![b'x'; 25];
        let pieces = all(&[&long[..], b"\nend\n"].concat(), 10);
        assert_eq!(pieces.len(), 4);
        assert!(pieces[..3].iter().all(|p| p.len() <= 10));
        assert_eq!(pieces[..3].concat(), long);
        assert_eq!(pieces[3], b"end");
    }
}
