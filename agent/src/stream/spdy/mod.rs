//! SPDY/3.1, as the Kubernetes streaming protocols use it.
//!
//! Why our own: the only SPDY crate on crates.io today, `spdy-mux` (0.5),
//! was evaluated and does not fit: it is GPL-3.0-only (husk is Apache-2.0),
//! needs rustc 1.95, and is a client-side multiplexer over WebSocket
//! transports for one port-forward tool rather than a server session over an
//! upgraded HTTP/1.1 connection. So the framing is written here from the
//! SPDY/3.1 draft: [`frame`] (frames and codec), [`headers`] (name/value
//! blocks, zlib with the SPDY/3 dictionary, one context per direction) and
//! [`session`] (streams, half-close, RST, PING, GOAWAY, flow control).

pub mod frame;
pub mod headers;
pub mod session;
mod stream;

pub use frame::{Frame, GoAwayStatus, RstStatus};
pub use headers::Headers;
pub use session::{Config, FlowControl, Incoming, Role, Session, SessionError, Stream};

#[cfg(test)]
mod tests;
