//! `husk`: the runc-compatible command line.

fn main() {
    husk_runtime::cli::main()
}
