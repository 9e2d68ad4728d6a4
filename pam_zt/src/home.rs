//! Home directories on first login: created from the skeleton, owned by the
//! user, never following a symlink and never touching an existing path.
//!
//! - The path must be absolute and plain (no `.`/`..`/empty components). It
//!   is walked from `/` one component at a time with
//!   `O_DIRECTORY|O_NOFOLLOW`, so no symlink anywhere on the way is followed
//!   (a symlinked /home is refused: set the real path in the directory).
//! - The parent must be root-owned and not group/other writable: otherwise
//!   someone else could swap what we create.
//! - `mkdirat(parent, name, 0700)`; EEXIST means "leave it alone", whatever
//!   it is (a directory, a file, a symlink).
//! - The skeleton is copied into the new, still root-owned 0700 directory
//!   (regular files and directories only, opened with O_NOFOLLOW, each
//!   created with O_EXCL and fchown'ed through its fd); only then is the
//!   home itself chowned and chmodded, so the user never sees a half copy.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, PartialEq, Eq)]
pub enum Home {
    Created,
    Existed,
}

const MAX_SKEL_DEPTH: u32 = 8;

fn err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn open_dir_at(dir: Option<&OwnedFd>, name: &CStr) -> Result<OwnedFd, String> {
    let at = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: valid fd or AT_FDCWD, valid C string.
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err(&format!("open {}", name.to_string_lossy())));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, String> {
    // SAFETY: zeroed stat is valid; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(err("fstat"));
    }
    Ok(st)
}

fn fchown_mod(fd: &OwnedFd, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    // SAFETY: fd is open.
    unsafe {
        if libc::fchown(fd.as_raw_fd(), uid, gid) != 0 {
            return Err(err("fchown"));
        }
        if libc::fchmod(fd.as_raw_fd(), mode) != 0 {
            return Err(err("fchmod"));
        }
    }
    Ok(())
}

/// Creates `home` for `uid:gid` with `mode`, copying `skel` into it.
pub fn create_home(
    home: &[u8],
    uid: u32,
    gid: u32,
    mode: u32,
    skel: &Path,
) -> Result<Home, String> {
    let shown = String::from_utf8_lossy(home).into_owned();
    if home.first() != Some(&b'/') || home.contains(&0) {
        return Err(format!("home {shown} is not an absolute path"));
    }
    let comps: Vec<&[u8]> = home[1..].split(|&b| b == b'/').collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == b"." || *c == b"..")
    {
        return Err(format!("home {shown} is not a plain path"));
    }
    let Some((name, parents)) = comps.split_last() else {
        return Err(format!("home {shown} is /"));
    };
    let mut dir = open_dir_at(None, c"/")?;
    for c in parents {
        let c = CString::new(*c).map_err(|_| "NUL in path")?;
        dir = open_dir_at(Some(&dir), &c)
            .map_err(|e| format!("{e} (under {shown}; symlinks are not followed)"))?;
    }
    let st = fstat(&dir)?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(format!(
            "the parent of {shown} is not root-owned or is writable by others"
        ));
    }
    let name = CString::new(*name).map_err(|_| "NUL in path")?;
    // SAFETY: valid fd and C string.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            return Ok(Home::Existed);
        }
        return Err(err(&format!("mkdir {shown}")));
    }
    let new = open_dir_at(Some(&dir), &name)?;
    // A skeleton that is missing or unsafe gives an empty home, not no home.
    let copied = match open_dir_at(
        None,
        &CString::new(skel.as_os_str().as_bytes()).map_err(|_| "NUL in path")?,
    ) {
        Ok(src) => copy_tree(&src, &new, uid, gid, 0),
        Err(e) => Err(e),
    };
    fchown_mod(&new, uid, gid, mode)?;
    copied
        .map(|()| Home::Created)
        .map_err(|e| format!("home {shown} created, skeleton incomplete: {e}"))
}

/// Copies regular files and directories from `src` into `dst` (both open
/// directory fds), owned by uid:gid. Symlinks, devices, fifos and sockets
/// are skipped.
fn copy_tree(src: &OwnedFd, dst: &OwnedFd, uid: u32, gid: u32, depth: u32) -> Result<(), String> {
    if depth > MAX_SKEL_DEPTH {
        return Err("skeleton too deep".into());
    }
    // fdopendir takes ownership of the fd it is given: give it a duplicate.
    let dup = src.try_clone().map_err(|e| format!("dup: {e}"))?;
    // SAFETY: we hand over an fd we own; closedir closes it.
    let dirp = unsafe { libc::fdopendir(std::os::fd::IntoRawFd::into_raw_fd(dup)) };
    if dirp.is_null() {
        return Err(err("fdopendir"));
    }
    struct Dir(*mut libc::DIR);
    impl Drop for Dir {
        fn drop(&mut self) {
            // SAFETY: opened by fdopendir, closed once.
            unsafe { libc::closedir(self.0) };
        }
    }
    let dirp = Dir(dirp);
    let mut result = Ok(());
    loop {
        // SAFETY: a valid DIR*; the entry is read before the next readdir.
        let ent = unsafe { libc::readdir(dirp.0) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        if let Err(e) = copy_entry(src, dst, &name, uid, gid, depth) {
            result = Err(e);
        }
    }
    result
}

fn copy_entry(
    src: &OwnedFd,
    dst: &OwnedFd,
    name: &CStr,
    uid: u32,
    gid: u32,
    depth: u32,
) -> Result<(), String> {
    // SAFETY: zeroed stat is valid; valid fd and C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe {
        libc::fstatat(
            src.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(err("fstatat"));
    }
    let perm = st.st_mode & 0o777 & !0o022;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            // SAFETY: valid fd and C string.
            if unsafe { libc::mkdirat(dst.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
                return Err(err("mkdir"));
            }
            let s = open_dir_at(Some(src), name)?;
            let d = open_dir_at(Some(dst), name)?;
            let r = copy_tree(&s, &d, uid, gid, depth + 1);
            fchown_mod(&d, uid, gid, perm)?;
            r
        }
        libc::S_IFREG => {
            // SAFETY: valid fds and C strings; the new fds are owned by Files.
            let (from, to) = unsafe {
                let f = libc::openat(
                    src.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
                );
                if f < 0 {
                    return Err(err("open skeleton file"));
                }
                let from = File::from_raw_fd(f);
                let t = libc::openat(
                    dst.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600,
                );
                if t < 0 {
                    return Err(err("create file"));
                }
                (from, File::from_raw_fd(t))
            };
            let mut from = from;
            let mut to = to;
            // Cap the copy: a skeleton is small; a huge file is a mistake.
            io::copy(&mut io::Read::take(&mut from, 64 << 20), &mut to)
                .map_err(|e| format!("copy: {e}"))?;
            let fd: OwnedFd = to.into();
            fchown_mod(&fd, uid, gid, perm)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tmp(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("pam-zt-home-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn home_is_created_once_from_skel_without_following_symlinks() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let base = tmp("create");
        let skel = base.join("skel");
        std::fs::create_dir_all(skel.join(".config/app")).unwrap();
        std::fs::write(skel.join(".bashrc"), "# bashrc\n").unwrap();
        std::fs::write(skel.join(".config/app/rc"), "x").unwrap();
        std::fs::write(base.join("secret"), "root only").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), skel.join("link")).unwrap();
        let homes = base.join("home");
        std::fs::create_dir(&homes).unwrap();
        std::fs::set_permissions(&homes, std::fs::Permissions::from_mode(0o755)).unwrap();

        let alice = homes.join("alice");
        let r = create_home(
            alice.as_os_str().as_bytes(),
            1_500_001,
            1_500_001,
            0o750,
            &skel,
        )
        .unwrap();
        assert_eq!(r, Home::Created);
        let m = std::fs::symlink_metadata(&alice).unwrap();
        assert!(m.is_dir());
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (1_500_001, 1_500_001, 0o750)
        );
        let rc = std::fs::metadata(alice.join(".bashrc")).unwrap();
        assert_eq!((rc.uid(), rc.gid()), (1_500_001, 1_500_001));
        assert_eq!(
            std::fs::read_to_string(alice.join(".config/app/rc")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::metadata(alice.join(".config")).unwrap().uid(),
            1_500_001
        );
        assert!(
            std::fs::symlink_metadata(alice.join("link")).is_err(),
            "symlinks are not copied"
        );

        // second login: untouched
        std::fs::write(alice.join(".bashrc"), "mine").unwrap();
        let r = create_home(
            alice.as_os_str().as_bytes(),
            1_500_001,
            1_500_001,
            0o750,
            &skel,
        )
        .unwrap();
        assert_eq!(r, Home::Existed);
        assert_eq!(
            std::fs::read_to_string(alice.join(".bashrc")).unwrap(),
            "mine"
        );

        // a symlink planted at the home path is not followed or changed
        let target = base.join("target");
        std::fs::create_dir(&target).unwrap();
        let bob = homes.join("bob");
        std::os::unix::fs::symlink(&target, &bob).unwrap();
        let r = create_home(
            bob.as_os_str().as_bytes(),
            1_500_002,
            1_500_002,
            0o750,
            &skel,
        )
        .unwrap();
        assert_eq!(r, Home::Existed);
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
        assert!(std::fs::read_dir(&target).unwrap().next().is_none());

        // a symlink on the way is refused
        let via = base.join("via");
        std::os::unix::fs::symlink(&homes, &via).unwrap();
        let carol = via.join("carol");
        assert!(create_home(carol.as_os_str().as_bytes(), 1, 1, 0o750, &skel).is_err());
        assert!(!homes.join("carol").exists());

        // a parent writable by others is refused
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(create_home(open.join("dave").as_os_str().as_bytes(), 1, 1, 0o750, &skel).is_err());

        // relative and dotted paths are refused
        assert!(create_home(b"home/eve", 1, 1, 0o750, &skel).is_err());
        assert!(create_home(b"/home/../etc", 1, 1, 0o750, &skel).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
