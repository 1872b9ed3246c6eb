//! `husklet`: the node agent.

fn main() {
    eprintln!("husklet: not built yet");
    std::process::exit(1);
}
