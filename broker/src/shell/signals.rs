//! SIGTERM / SIGINT (shut down) and SIGHUP (reload the TLS certificate): blocked in every
//! thread, each awaited synchronously by a thread of its own.

/// A signal set of `signals`.
fn set_of(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before the adds.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

const TERMINATION: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and in threads it spawns
/// afterwards, so that only [`wait_for_termination`] and [`wait_for_reload`] receive them
/// (a thread that left one unblocked would take the signal's default action: the process
/// would end without draining). Called before the server starts any thread.
pub fn block_handled_signals() {
    let set = set_of(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
    // SAFETY: pthread_sigmask only changes the calling thread's mask; `set` is initialised.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for one of `signals` and returns it.
fn wait_for(signals: &[libc::c_int]) -> libc::c_int {
    let set = set_of(signals);
    let mut signal: libc::c_int = 0;
    loop {
        // SAFETY: `set` is initialised and `signal` is a valid place for sigwait to write to.
        let result = unsafe { libc::sigwait(&set, &mut signal) };
        if result == 0 && signals.contains(&signal) {
            return signal;
        }
    }
}

/// Waits for SIGTERM or SIGINT and returns its name.
pub fn wait_for_termination() -> &'static str {
    if wait_for(&TERMINATION) == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// Waits for the next SIGHUP.
pub fn wait_for_reload() {
    wait_for(&[libc::SIGHUP]);
}
