//! Binding the listeners: the Unix socket (stale files, permissions, group), the TCP
//! port, the metrics port, and the socket file removed by whoever bound it.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::client::Target;
use crate::config::Config;

/// Bound listeners, before serving.
pub struct Listeners {
    pub unix: Option<(UnixListener, SocketFile)>,
    pub tcp: Option<TcpListener>,
    /// Observation-only listener (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Self-probe targets for the listeners that are on.
    pub fn targets(&self) -> Vec<(&'static str, Target)> {
        let mut t = Vec::new();
        if let Some((_, file)) = &self.unix {
            t.push(("unix", Target::Unix(file.path().to_path_buf())));
        }
        if let Some(addr) = self.tcp.as_ref().and_then(|l| l.local_addr().ok()) {
            t.push(("tcp", Target::Tcp(addr)));
        }
        t
    }
}

/// Binds both listeners as configured. Must run inside the tokio runtime. If a later
/// bind fails (a TCP port in use), the socket file already bound is removed on the way out.
pub fn bind(cfg: &Config) -> Result<Listeners, String> {
    let unix = match &cfg.socket {
        None => None,
        Some(path) => {
            let listener = bind_unix(path, cfg.socket_mode, cfg.socket_group.as_deref())?;
            let file = SocketFile::adopt(path)
                .ok_or_else(|| format!("--socket {}: vanished right after bind", path.display()))?;
            Some((listener, file))
        }
    };
    let tcp = cfg.listen.map(|a| bind_tcp("--listen", a)).transpose()?;
    let metrics = cfg
        .metrics_listen
        .map(|a| bind_tcp("--metrics-listen", a))
        .transpose()?;
    Ok(Listeners { unix, tcp, metrics })
}

/// Device and inode of the socket file we bound, to recognise it when removing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketId(u64, u64);

impl SocketId {
    pub(super) fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(Self(m.dev(), m.ino()))
    }
}

/// The socket file this process bound, removed when this is dropped: at shutdown once
/// accepting stops, and on any way out of startup after the bind, so a failed start
/// leaves no file without an owner. Only while the path is still the inode we created:
/// another instance may have bound it since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: SocketId,
}

impl SocketFile {
    /// Takes charge of the socket just bound at `path`; `None` if it is already gone.
    pub fn adopt(path: &Path) -> Option<Self> {
        Some(Self {
            id: SocketId::of(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file now (if still ours).
    pub fn remove(self) {
        drop(self);
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let path = self.path.display();
        if SocketId::of(&self.path) != Some(self.id) {
            tracing::warn!(path = %path, "socket file is gone or replaced; not removing it");
        } else if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %path, error = %e, "cannot remove socket file");
        }
    }
}

fn bind_tcp(flag: &str, addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            format!("{flag} {addr}: address already in use (another normd, or another program)")
        } else {
            format!("{flag} {addr}: {e}")
        }
    })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("{flag} {addr}: {e}"))?;
    TcpListener::from_std(std_listener).map_err(|e| format!("{flag} {addr}: {e}"))
}

fn bind_unix(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Someone answering there means a live normd (or something else): never steal it.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "--socket {shown}: already running: a live process accepts connections on this socket"
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|e| {
                        format!("--socket {shown}: cannot remove stale socket file: {e}")
                    })?;
                    tracing::info!(path = %shown, "replaced a stale socket file left by a dead process");
                }
                Err(e) => {
                    return Err(format!(
                        "--socket {shown}: exists and cannot be probed ({e}); refusing to replace it"
                    ))
                }
            }
        }
        Ok(_) => {
            return Err(format!(
                "--socket {shown}: exists and is not a socket; refusing to replace it"
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--socket {shown}: {e}")),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "--socket {shown}: cannot create directory {}: {e}",
                dir.display()
            )
        })?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("--socket {shown}: cannot bind: {e}"))?;
    let applied = (|| -> Result<(), String> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("--socket-mode {mode:o} on {shown}: {e}"))?;
        if let Some(group) = group {
            let gid = resolve_group(group)?;
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|e| format!("--socket-group {group} on {shown}: {e}"))?;
        }
        Ok(())
    })();
    if let Err(e) = applied {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// A numeric gid, or a name looked up in /etc/group (no NSS: the image has no libc
/// resolver configuration, and the pod's groups are numeric anyway). `normd check` calls
/// it too, so a group that `serve` would refuse fails the check with the same words.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("--socket-group {group}: cannot read /etc/group: {e}"))?;
    text.lines()
        .find_map(|line| {
            let mut f = line.split(':');
            (f.next() == Some(group)).then(|| f.nth(1).and_then(|g| g.parse().ok()))?
        })
        .ok_or_else(|| format!("--socket-group {group}: no such group in /etc/group"))
}

pub(super) enum Acceptor {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Either kind of accepted stream.
pub(super) enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

pub(super) async fn accept(acceptor: &Acceptor) -> io::Result<Stream> {
    match acceptor {
        Acceptor::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        Acceptor::Tcp(l) => l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Stream::Tcp(s)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_file_is_removed_only_while_it_is_the_one_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("normd.sock");
        let _ours = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = SocketFile::adopt(&path).unwrap();
        file.remove();
        assert!(!path.exists(), "ours is removed");

        let _first = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = SocketFile::adopt(&path).unwrap();
        // Another instance replaced it in the meantime.
        std::fs::remove_file(&path).unwrap();
        let _theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(file);
        assert!(path.exists(), "theirs is left alone");
    }

    #[test]
    fn a_failed_tcp_bind_removes_the_socket_file_just_bound() {
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = crate::config::Config::resolve(
            crate::config::ServeArgs {
                socket: Some(dir.path().join("normd.sock").display().to_string()),
                listen: Some(busy.local_addr().unwrap().to_string()),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(async { bind(&cfg).err().unwrap() });
        assert!(e.contains("already in use"), "{e}");
        assert!(!dir.path().join("normd.sock").exists());
        cfg.listen = None;
        cfg.metrics_listen = busy.local_addr().ok();
        let e = rt.block_on(async { bind(&cfg).err().unwrap() });
        assert!(e.contains("--metrics-listen"), "{e}");
        assert!(!dir.path().join("normd.sock").exists());
    }
}
