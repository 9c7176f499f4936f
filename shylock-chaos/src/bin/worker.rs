//! A chaos worker: contends for one lock in a loop and logs its events.
//!
//! ```text
//! shylock-chaos-worker --backend URL (mongodb://… or http://USER:PASSWORD@…, see shylock::BackendUrl)
//!     --database DB --lock NAME --form sync|async --lease-ms N --hold-max-ms N --poll-max-ms N
//!     --contenders N --log FILE --id ID --duration-s N
//! ```
//!
//! It stops after `--duration-s`, or as soon as its stdin closes (the
//! controller is gone).

use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match shylock_chaos::worker::WorkerConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shylock-chaos-worker: {e}");
            std::process::exit(2);
        }
    };
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    if let Err(e) = shylock_chaos::worker::run(&config) {
        eprintln!("shylock-chaos-worker: {e}");
        std::process::exit(1);
    }
}
