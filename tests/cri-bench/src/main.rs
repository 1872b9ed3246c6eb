//! `cri-bench`: a CRI v1 client and benchmark.

fn main() {
    eprintln!("cri-bench: not built yet");
    std::process::exit(1);
}
