//! `husk-portmap` CNI plugin (see husk_cni::portmap).

fn main() {
    husk_cni::plugin::init_logging();
    husk_cni::plugin::main(&husk_cni::portmap::PortmapPlugin)
}
