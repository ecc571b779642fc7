//! Link settings for the `warranty` binary.
//!
//! Relative relocations packed as RELR (`-z pack-relative-relocs`, GNU ld 2.38+, glibc 2.36+;
//! the build and runtime images are Debian 12: binutils 2.40, glibc 2.36). A position-independent
//! Rust binary carries one 24-byte relocation per pointer in its read-only data (about 83,000
//! here, 2 MB); the dynamic loader reads every one at each start, and those pages stay
//! resident. Packed, the same relocations take a few kilobytes. docs/decisions/0022.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
