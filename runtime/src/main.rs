//! `husk`: the runc-compatible command line.

fn main() {
    eprintln!("husk: not built yet");
    std::process::exit(1);
}
