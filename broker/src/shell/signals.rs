//! SIGTERM / SIGINT: blocked in every thread, awaited synchronously by the main thread.

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before the adds.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and in threads it spawns afterwards, so
/// that only [`wait_for_termination`] receives them.
pub fn block_termination_signals() {
    let set = termination_set();
    // SAFETY: pthread_sigmask only changes the calling thread's mask; `set` is initialised.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGTERM or SIGINT and returns its name.
pub fn wait_for_termination() -> &'static str {
    let set = termination_set();
    let mut signal: libc::c_int = 0;
    loop {
        // SAFETY: `set` is initialised and `signal` is a valid place for sigwait to write to.
        let result = unsafe { libc::sigwait(&set, &mut signal) };
        if result == 0 && (signal == libc::SIGINT || signal == libc::SIGTERM) {
            break;
        }
    }
    if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}
