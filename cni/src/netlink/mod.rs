//! Links, addresses and routes through rtnetlink, in the plugin's own
//! network namespace or in a container's (entered by a short-lived thread
//! that only opens the netlink socket there); the conntrack table through
//! ctnetlink.

pub mod conntrack;
mod link;
mod ns;

pub use link::{LinkInfo, Netlink, NetlinkError};
pub use ns::{NetNs, NsError};
