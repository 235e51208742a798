use clap::Parser;

fn main() {
    let cli = georep::cli::Cli::parse();
    if let Err(e) = georep::cli::run(cli) {
        eprintln!("georep: {e:#}");
        std::process::exit(1);
    }
}
