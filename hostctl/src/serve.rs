//! `hostctl serve`: hostctl calls over one long-lived process, so that a gateway's frequent
//! calls (`list` every few seconds, and on every `ssh gw list`) do not each pay for a new SSH
//! session and the host user's shell start-up (their `.bashrc`, which may run `pyenv init`,
//! `nvm` or `conda` and take a hundred milliseconds or more).
//!
//! The gateway writes one [`ServeRequest`] per line on stdin; serve runs `hostctl ARGS...` for
//! each, at once and side by side, with the request's stdin, and writes a [`ServeReply`] line
//! on stdout as each ends. Each call is a new hostctl process, exactly as over an exec channel
//! (run by the path serve was started with, so a hostctl upgraded meanwhile is the one that
//! runs). At the end of stdin, serve waits for the calls under way, then exits.

use std::io::{BufRead, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::api::{Call, ServeReply, ServeRequest};

/// The longest request line: requests are small (a `create` with its prompt is the largest).
pub const MAX_REQUEST: usize = 8 * 1024 * 1024;

/// Serves the requests read from `input` by running `program` with their words, writing the
/// replies to `output`. Returns at the end of `input`, once every call has ended.
pub fn run(
    program: &std::ffi::OsStr,
    input: impl BufRead,
    output: impl Write + Send + 'static,
) -> std::io::Result<()> {
    let output = Arc::new(Mutex::new(output));
    let mut calls = Vec::new();
    let mut input = input;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut input)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_REQUEST {
            // No id can be trusted from a line cut short: the caller is broken; stop.
            reply(&output, &refused(0, "a request line is longer than 8 MiB"));
            break;
        }
        let request: ServeRequest = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                reply(&output, &refused(0, &format!("not a request: {e}")));
                continue;
            }
        };
        let serve = Call::Serve { program: None }.verb();
        if request.args.first().is_none_or(|verb| verb == serve) {
            reply(
                &output,
                &refused(request.id, "no verb to run (or `serve` itself)"),
            );
            continue;
        }
        let program = program.to_owned();
        let output = output.clone();
        calls.retain(|c: &std::thread::JoinHandle<()>| !c.is_finished());
        calls.push(std::thread::spawn(move || {
            reply(&output, &call(&program, request));
        }));
    }
    for c in calls {
        let _ = c.join();
    }
    Ok(())
}

fn refused(id: u64, why: &str) -> ServeReply {
    ServeReply {
        id,
        code: Some(2),
        stderr: format!("hostctl serve: {why}\n"),
        ..ServeReply::default()
    }
}

fn reply(output: &Mutex<impl Write>, reply: &ServeReply) {
    let Ok(mut line) = serde_json::to_vec(reply) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut out) = output.lock() {
        // A caller gone is no one to tell: the calls under way still finish.
        let _ = out.write_all(&line).and_then(|()| out.flush());
    }
}

/// Runs one call to its end.
fn call(program: &std::ffi::OsStr, request: ServeRequest) -> ServeReply {
    let mut child = match Command::new(program)
        .args(&request.args)
        .stdin(if request.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return ServeReply {
                id: request.id,
                stderr: format!(
                    "hostctl serve: cannot run {}: {e}\n",
                    program.to_string_lossy()
                ),
                ..ServeReply::default()
            };
        }
    };
    // stdin is written beside the reading of the output, so that neither side waits on the
    // other.
    let feeder = child
        .stdin
        .take()
        .zip(request.stdin)
        .map(|(mut pipe, text)| {
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            })
        });
    let output = child.wait_with_output();
    if let Some(f) = feeder {
        let _ = f.join();
    }
    match output {
        Ok(out) => ServeReply {
            id: request.id,
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => ServeReply {
            id: request.id,
            stderr: format!("hostctl serve: waiting for the call: {e}\n"),
            ..ServeReply::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn serve(requests: &[String]) -> Vec<ServeReply> {
        let input = requests.join("\n") + "\n";
        let out = Shared::default();
        run(std::ffi::OsStr::new("sh"), input.as_bytes(), out.clone()).expect("serve");
        let bytes = out.0.lock().expect("lock").clone();
        let mut replies: Vec<ServeReply> = String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a reply per line"))
            .collect();
        replies.sort_by_key(|r| r.id);
        replies
    }

    fn request(id: u64, script: &str, stdin: Option<&str>) -> String {
        serde_json::to_string(&ServeRequest {
            id,
            args: vec!["-c".into(), script.into()],
            stdin: stdin.map(str::to_owned),
        })
        .expect("json")
    }

    #[test]
    fn each_call_gets_its_own_reply_with_its_output_status_and_stdin() {
        let replies = serve(&[
            // The first ends last: replies come as calls end, matched by id.
            request(1, "sleep 0.3; echo slow", None),
            request(2, "echo out; echo err >&2; exit 3", None),
            request(3, "tr a-z A-Z", Some("fed on stdin\n")),
            request(4, "kill -TERM $$", None),
            "{not json".into(),
            serde_json::to_string(&ServeRequest {
                id: 6,
                args: vec!["serve".into()],
                stdin: None,
            })
            .expect("json"),
        ]);
        let by_id = |id: u64| replies.iter().find(|r| r.id == id).expect("a reply");
        assert_eq!(
            (by_id(1).code, by_id(1).stdout.as_str()),
            (Some(0), "slow\n")
        );
        let two = by_id(2);
        assert_eq!(
            (two.code, two.stdout.as_str(), two.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        assert_eq!(by_id(3).stdout, "FED ON STDIN\n");
        assert_eq!((by_id(4).code, by_id(4).signal), (None, Some(15)));
        assert!(by_id(0).stderr.contains("not a request"), "{:?}", by_id(0));
        assert_eq!(by_id(6).code, Some(2));
        assert_eq!(replies.len(), 6, "{replies:?}");
    }

    #[test]
    fn many_calls_at_once_all_answer() {
        let requests: Vec<String> = (1..=40)
            .map(|i| request(i, &format!("echo {i}"), None))
            .collect();
        let replies = serve(&requests);
        assert_eq!(replies.len(), 40);
        for (i, r) in (1..=40).zip(&replies) {
            assert_eq!((r.id, r.stdout.trim()), (i, i.to_string().as_str()));
        }
    }
}
