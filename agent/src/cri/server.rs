//! Serving the CRI on a unix socket.

use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use super::error::CriError;
use super::grpc;
use super::service::{ImageService, RuntimeService};

/// The socket path of `unix:///path` (or a plain absolute path).
pub fn socket_path(listen: &str) -> Result<&Path, CriError> {
    let p = listen.strip_prefix("unix://").unwrap_or(listen);
    if !p.starts_with('/') {
        return Err(CriError::invalid(
            "--listen",
            format!("{listen:?}: expected unix:///absolute/path"),
        ));
    }
    Ok(Path::new(p))
}

/// Bind `path` (replacing a stale socket) with mode 0660.
///
/// The socket is bound and listening under a temporary name and renamed
/// into place: a client that sees the path can connect (between `bind` and
/// `listen` a connect is refused), and never sees it with the wrong mode.
pub fn bind(path: &Path) -> Result<UnixListener, CriError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CriError::io("create the socket's dir", dir))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    match std::fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CriError::io("remove the old socket", tmp)(e)),
    }
    let l = UnixListener::bind(tmp).map_err(CriError::io("listen", tmp))?;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o660))
        .map_err(CriError::io("chmod the socket", tmp))?;
    std::fs::rename(tmp, path).map_err(CriError::io("move the socket into place", path))?;
    Ok(l)
}

/// Serve `svc` on `listener` until `shutdown` resolves.
pub async fn serve<T: RuntimeService + ImageService>(
    svc: Arc<T>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (rt, img) = grpc::services(svc);
    tonic::transport::Server::builder()
        .add_service(rt)
        .add_service(img)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
