//! The `kbin` binary: a thin clap layer over the library (see `src/cli/`).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
