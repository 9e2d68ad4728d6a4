//! glibc loads NSS modules by the name libnss_<service>.so.2; give the cdylib
//! that SONAME so the installed file and its DT_SONAME agree.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_zt.so.2");
    println!("cargo:rerun-if-changed=build.rs");
}
