//! `husk-bridge` CNI plugin (see husk_cni::bridge).

fn main() {
    husk_cni::plugin::init_logging();
    husk_cni::plugin::main(&husk_cni::bridge::BridgePlugin)
}
