//! `husk-bridge` CNI plugin.

fn main() {
    eprintln!("husk-bridge: not built yet");
    std::process::exit(1);
}
