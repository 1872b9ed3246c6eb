//! The streaming protocols of exec, attach and port-forward, as Kubernetes
//! clients (kubectl, crictl, the apiserver) speak them.
//!
//! The protocol layer, and the server on top of it:
//!
//! - [`server`]: the HTTP server behind the URLs of CRI `Exec`, `Attach` and
//!   `PortForward`, with one-time tokens ([`token`]).
//! - [`bridge`]: a client's streams to a husk-shim attach connection.
//! - [`spdy`]: SPDY/3.1 framing and sessions.
//! - [`negotiate`]: the HTTP upgrade handshakes (SPDY and WebSocket) and
//!   `X-Stream-Protocol-Version` / `Sec-WebSocket-Protocol` negotiation.
//! - [`remotecommand`]: exec/attach over SPDY (`v4`, `v3`, `v2.channel.k8s.io`).
//! - [`portforward`]: `portforward.k8s.io` over SPDY.
//! - [`websocket`]: the channel protocols (`v5`/`v4.channel.k8s.io`) for
//!   exec/attach and port-forward, and SPDY tunnelled in WebSocket.
//! - [`status`]: the `metav1.Status` written on the error stream.

pub mod bridge;
pub mod io;
pub mod negotiate;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod status;
pub mod token;
pub mod websocket;

#[cfg(test)]
mod crictl_tests;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod ws_tests;
