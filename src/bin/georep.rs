use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = georep::cli::Cli::parse();
    if let Err(e) = georep::cli::run(cli) {
        eprintln!("georep: {e:#}");
        std::process::exit(1);
    }
}
