//! `host check NAME`: prints the steps of the host's diagnosis (`hosts::remote::diagnose`),
//! each with what to do when it fails; `doctor` prints the local steps.

use super::*;
use crate::hosts::remote::diagnose;

pub(super) async fn check(gw: &Arc<Gateway>, args: HostName, io: &mut CommandIo) -> CommandResult {
    let h = host_record(&gw.store, &args.name).await?;
    let steps = if h.name == LOCAL_HOST {
        diagnose::local(gw.hosts.get(LOCAL_HOST)).await
    } else {
        diagnose::remote(&gw.diagnostics(), &h).await
    };
    let healthy = steps.iter().all(|s| s.ok);
    if args.json {
        let value = json!({
            "host": h.name,
            "ok": healthy,
            "steps": steps.iter().map(|s| json!({
                "step": s.name, "ok": s.ok, "detail": s.detail, "fix": s.fix,
            })).collect::<Vec<_>>(),
        });
        io.write_out(&json_text(&value)).await;
    } else {
        let mut text = String::new();
        for s in &steps {
            text.push_str(&format!(
                "{} {:<9} {}\n",
                if s.ok { "ok  " } else { "FAIL" },
                s.name,
                s.detail
            ));
            if let Some(fix) = &s.fix {
                text.push_str(&format!("               fix: {fix}\n"));
            }
        }
        text.push_str(if healthy {
            "the host is healthy\n"
        } else {
            "the host is not usable until the failing step is fixed\n"
        });
        io.write_out(&text).await;
    }
    Ok(if healthy { exit::OK } else { exit::FAILED })
}
