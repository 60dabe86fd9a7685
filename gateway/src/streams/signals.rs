//! Signals as SSH names them (RFC 4254 §6.10: `TERM`, `INT`, ...) and as Unix numbers them:
//! a client's `signal` request reaches a process on a host, and a process's end by a signal
//! reaches the client as an `exit-signal`.

use russh::Sig;

/// The SSH name of a signal (RFC 4254 §6.10: the name without `SIG`).
pub fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => name.clone(),
    }
}

/// The Unix signal number of an SSH signal, when this system has it.
pub fn signal_number(sig: &Sig) -> Option<i32> {
    format!("SIG{}", signal_name(sig))
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// The SSH signal of a name as SSH spells it (`INT`, `TERM`, ...).
pub fn sig_from_name(name: &str) -> Sig {
    match name {
        "ABRT" => Sig::ABRT,
        "ALRM" => Sig::ALRM,
        "FPE" => Sig::FPE,
        "HUP" => Sig::HUP,
        "ILL" => Sig::ILL,
        "INT" => Sig::INT,
        "KILL" => Sig::KILL,
        "PIPE" => Sig::PIPE,
        "QUIT" => Sig::QUIT,
        "SEGV" => Sig::SEGV,
        "TERM" => Sig::TERM,
        "USR1" => Sig::USR1,
        other => Sig::Custom(other.to_owned()),
    }
}

/// The SSH signal for a Unix signal number.
pub fn ssh_signal(number: i32) -> Sig {
    use nix::sys::signal::Signal;
    match Signal::try_from(number) {
        Ok(Signal::SIGABRT) => Sig::ABRT,
        Ok(Signal::SIGALRM) => Sig::ALRM,
        Ok(Signal::SIGFPE) => Sig::FPE,
        Ok(Signal::SIGHUP) => Sig::HUP,
        Ok(Signal::SIGILL) => Sig::ILL,
        Ok(Signal::SIGINT) => Sig::INT,
        Ok(Signal::SIGKILL) => Sig::KILL,
        Ok(Signal::SIGPIPE) => Sig::PIPE,
        Ok(Signal::SIGQUIT) => Sig::QUIT,
        Ok(Signal::SIGSEGV) => Sig::SEGV,
        Ok(Signal::SIGTERM) => Sig::TERM,
        Ok(Signal::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_owned()),
        Err(_) => Sig::Custom(number.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_both_ways() {
        assert_eq!(signal_name(&ssh_signal(15)), "TERM");
        assert_eq!(signal_name(&ssh_signal(9)), "KILL");
        assert_eq!(signal_name(&ssh_signal(10)), "USR1");
        assert_eq!(signal_name(&ssh_signal(12)), "USR2");
        for n in [1, 2, 9, 10, 12, 15] {
            assert_eq!(signal_number(&ssh_signal(n)), Some(n));
            let name = signal_name(&ssh_signal(n));
            assert_eq!(signal_name(&sig_from_name(&name)), name);
        }
    }
}
