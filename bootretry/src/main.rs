//! `BOOTX64.EFI` of a Slate Secure Boot image: starts systemd-boot from the same ESP, and
//! resets the machine if systemd-boot ever returns.
//!
//! systemd-boot counts a trial entry's try (renames it) before it loads it. With Secure Boot
//! on, a UKI the firmware refuses ("Access Denied": unsigned, signed by a key not in db, one
//! byte changed) makes `LoadImage` fail, and systemd-boot gives up and returns to the
//! firmware, which moves on to network boot and then waits at its boot menu: the good slot
//! would come back only when someone power-cycles the machine. Returning here instead resets
//! it; each reset spends one try, and once the trial has none left systemd-boot boots the good
//! slot, as boot counting intends. A machine whose every entry is refused resets until
//! someone repairs it, which is what a device without a trusted image can do.
//!
//! The loader does nothing else, so it is small enough to read whole: find our own device,
//! build the path `\EFI\systemd\systemd-bootx64.efi` on it, `LoadImage` (the firmware checks
//! systemd-boot's signature too), `StartImage`, and on any return say why on the console,
//! wait three seconds and `ResetSystem`.

#![no_std]
#![no_main]

use core::ffi::c_void;
use core::ptr::null_mut;
use r_efi::efi;
use r_efi::protocols::{device_path, loaded_image, simple_text_output};

/// systemd-boot, where `bootctl install` and `slate build` put it.
const SYSTEMD_BOOT: &str = "\\EFI\\systemd\\systemd-bootx64.efi";
/// Room for the device's path plus the file node: a PCI disk's partition is about 60 bytes.
const PATH_BYTES: usize = 1024;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Writes `text` to the console (ASCII only; the messages are ours).
fn say(st: *mut efi::SystemTable, text: &str) {
    let mut buf = [0u16; 160];
    let room = buf.len() - 1;
    for (unit, c) in buf.iter_mut().zip(text.chars().take(room)) {
        *unit = if c.is_ascii() {
            c as u16
        } else {
            u16::from(b'?')
        };
    }
    // SAFETY: the firmware's system table and console are valid while boot services run.
    unsafe {
        let out: *mut simple_text_output::Protocol = (*st).con_out;
        if !out.is_null() {
            ((*out).output_string)(out, buf.as_mut_ptr());
        }
    }
}

/// Copies the device path at `dp` without its end node into `out`; returns the bytes used.
///
/// # Safety
/// `dp` must point at a well-formed device path, as the firmware's protocol gives.
unsafe fn copy_device_path(dp: *const device_path::Protocol, out: &mut [u8]) -> Option<usize> {
    let mut at = dp as *const u8;
    let mut used = 0;
    loop {
        let node = &*(at as *const device_path::Protocol);
        let len = usize::from(u16::from_le_bytes(node.length));
        if node.r#type == device_path::TYPE_END || len < 4 {
            return Some(used);
        }
        let dest = out.get_mut(used..used + len)?;
        core::ptr::copy_nonoverlapping(at, dest.as_mut_ptr(), len);
        used += len;
        at = at.add(len);
    }
}

/// The full device path of systemd-boot on the device `device` (our own ESP), in `buf`.
///
/// # Safety
/// `bs` must be the firmware's boot services and `device` a handle it gave.
unsafe fn systemd_boot_path(
    bs: *mut efi::BootServices,
    device: efi::Handle,
    buf: &mut [u8; PATH_BYTES],
) -> Result<(), &'static str> {
    let mut dp: *mut c_void = null_mut();
    let mut guid = device_path::PROTOCOL_GUID;
    if ((*bs).handle_protocol)(device, &mut guid, &mut dp).is_error() || dp.is_null() {
        return Err("the ESP has no device path");
    }
    let mut used = copy_device_path(dp as *const device_path::Protocol, buf)
        .ok_or("the ESP's device path is too long")?;
    // MEDIA_DEVICE_PATH / MEDIA_FILEPATH_DP: the path in UTF-16 with its NUL.
    let name_len = (SYSTEMD_BOOT.len() + 1) * 2;
    let node_len = 4 + name_len;
    let node = buf
        .get_mut(used..used + node_len + 4)
        .ok_or("the ESP's device path is too long")?;
    node[0] = device_path::TYPE_MEDIA;
    node[1] = device_path::Media::SUBTYPE_FILE_PATH;
    node[2..4].copy_from_slice(&(node_len as u16).to_le_bytes());
    for (i, unit) in SYSTEMD_BOOT.encode_utf16().chain([0]).enumerate() {
        node[4 + 2 * i..6 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    used += node_len;
    buf[used..used + 4].copy_from_slice(&[
        device_path::TYPE_END,
        device_path::End::SUBTYPE_ENTIRE,
        4,
        0,
    ]);
    Ok(())
}

/// Loads and starts systemd-boot; returns only when it could not, or when it returned.
///
/// # Safety
/// `image` and `st` must be what the firmware passed to [`efi_main`].
unsafe fn run_systemd_boot(image: efi::Handle, st: *mut efi::SystemTable) -> &'static str {
    let bs = (*st).boot_services;
    let mut li: *mut c_void = null_mut();
    let mut guid = loaded_image::PROTOCOL_GUID;
    if ((*bs).handle_protocol)(image, &mut guid, &mut li).is_error() || li.is_null() {
        return "no loaded-image protocol";
    }
    let device = (*(li as *mut loaded_image::Protocol)).device_handle;
    let mut path = [0u8; PATH_BYTES];
    if let Err(why) = systemd_boot_path(bs, device, &mut path) {
        return why;
    }
    let mut child: efi::Handle = null_mut();
    let loaded = ((*bs).load_image)(
        efi::Boolean::FALSE,
        image,
        path.as_mut_ptr() as *mut device_path::Protocol,
        null_mut(),
        0,
        &mut child,
    );
    if loaded.is_error() {
        return "the firmware refused to load systemd-boot";
    }
    let mut exit_size = 0usize;
    ((*bs).start_image)(child, &mut exit_size, null_mut());
    "systemd-boot returned: an entry could not be started"
}

/// The UEFI entry point.
///
/// # Safety
/// Called by the firmware alone, with its own image handle and system table.
#[export_name = "efi_main"]
pub unsafe extern "efiapi" fn efi_main(
    image: efi::Handle,
    st: *mut efi::SystemTable,
) -> efi::Status {
    // SAFETY: the firmware passes its own image handle and system table.
    unsafe {
        let why = run_systemd_boot(image, st);
        say(st, "\r\nslate: boot retry: ");
        say(st, why);
        say(st, "; resetting to count the next try\r\n");
        ((*(*st).boot_services).stall)(3_000_000);
        ((*(*st).runtime_services).reset_system)(
            efi::RESET_COLD,
            efi::Status::SUCCESS,
            0,
            null_mut(),
        );
    }
    efi::Status::ABORTED
}
