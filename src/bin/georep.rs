use clap::Parser;

fn main() {
    georep::logging::init("warn", false);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| georep::cli::gluster::claims(a)) {
        match georep::cli::gluster::run(&args) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("georep: {e:#}");
                std::process::exit(1);
            }
        }
    }
    let cli = georep::cli::Cli::parse();
    if let Err(e) = georep::cli::run(cli) {
        eprintln!("georep: {e:#}");
        std::process::exit(1);
    }
}
