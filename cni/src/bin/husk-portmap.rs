//! `husk-portmap` CNI plugin.

fn main() {
    eprintln!("husk-portmap: not built yet");
    std::process::exit(1);
}
