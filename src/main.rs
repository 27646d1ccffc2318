//! The `lomi-sync` binary: a thin shell over the library. `main` turns the outcome into
//! an exit code and prints the whole error chain on one line.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the chain: "what we were doing: why it failed: root cause".
            eprintln!("lomi-sync: error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
