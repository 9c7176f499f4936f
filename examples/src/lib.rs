//! Examples for shylock: see the `[[example]]` targets. This library holds
//! what the examples share.

use std::error::Error;
use std::process::ExitCode;

/// The end of an example's `main`: on error, print the message and then each
/// cause whose text the message does not already carry (what a user should
/// read, not a `Debug` dump), and exit with status 1.
///
/// ```
/// use shylock_examples::report;
/// let failed: Result<(), Box<dyn std::error::Error>> = Err("no server".into());
/// assert_eq!(report(failed), std::process::ExitCode::FAILURE);
/// ```
pub fn report(result: Result<(), Box<dyn Error>>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let message = error.to_string();
    eprintln!("error: {message}");
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            eprintln!("  caused by: {text}");
        }
        cause = e.source();
    }
    ExitCode::FAILURE
}
