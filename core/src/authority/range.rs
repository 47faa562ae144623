//! Ansible-style host patterns: `web-[01:40]`, `db-[a:c]`, `rack[1:3]-node[1:2]`, `x[0:10:2]`.
//!
//! Ansible keeps the width of a zero-padded start (`[01:40]` gives `01` … `40`),
//! so does this.

/// Upper bound on how many names one pattern may produce, so that a typo such as
/// `[1:99999999]` is an error instead of an exhausted machine.
pub const MAX_EXPANSION: usize = 100_000;

/// True when `pattern` contains a bracket range and needs [`expand`].
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains('[')
}

/// Expands every bracket range in `pattern`, left to right.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("unbalanced ']' in host pattern {pattern:?}"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("unclosed '[' in host pattern {pattern:?}"))?;
    let prefix = &pattern[..open];
    if prefix.contains(']') {
        return Err(format!("unbalanced ']' in host pattern {pattern:?}"));
    }
    let body = &pattern[open + 1..close];
    let items = expand_range(body).map_err(|e| format!("host pattern {pattern:?}: {e}"))?;
    let tails = expand(&pattern[close + 1..])?;
    let count = items.len().saturating_mul(tails.len());
    if count > MAX_EXPANSION {
        return Err(format!(
            "host pattern {pattern:?} expands to {count} names, more than {MAX_EXPANSION}"
        ));
    }
    let mut out = Vec::with_capacity(count);
    for item in &items {
        for tail in &tails {
            out.push(format!("{prefix}{item}{tail}"));
        }
    }
    Ok(out)
}

fn expand_range(body: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = body.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [start, end] => (*start, *end, 1u64),
        [start, end, step] => {
            let step: u64 = step
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("invalid step {step:?}"))?;
            (*start, *end, step)
        }
        _ => {
            return Err(format!(
                "expected [start:end] or [start:end:step], got [{body}]"
            ))
        }
    };
    if start.is_empty() || end.is_empty() {
        return Err(format!("empty bound in [{body}]"));
    }
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if numeric(start) && numeric(end) {
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        let lo: u64 = start
            .parse()
            .map_err(|_| format!("bound {start:?} too large"))?;
        let hi: u64 = end
            .parse()
            .map_err(|_| format!("bound {end:?} too large"))?;
        if lo > hi {
            return Err(format!("start {start} is greater than end {end}"));
        }
        let count = (hi - lo) / step + 1;
        if count > MAX_EXPANSION as u64 {
            return Err(format!(
                "range [{body}] has {count} values, more than {MAX_EXPANSION}"
            ));
        }
        return Ok((lo..=hi)
            .step_by(step as usize)
            .map(|n| format!("{n:0width$}"))
            .collect());
    }
    let single_letter = |s: &str| s.len() == 1 && s.as_bytes()[0].is_ascii_alphabetic();
    if single_letter(start) && single_letter(end) {
        let (lo, hi) = (start.as_bytes()[0], end.as_bytes()[0]);
        if lo > hi || lo.is_ascii_lowercase() != hi.is_ascii_lowercase() {
            return Err(format!("invalid letter range [{body}]"));
        }
        return Ok((lo..=hi)
            .step_by(step as usize)
            .map(|b| (b as char).to_string())
            .collect());
    }
    Err(format!("[{body}] is neither a numeric nor a letter range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_zero_padding() {
        let names = expand("web-[01:12]").unwrap();
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "web-01");
        assert_eq!(names[11], "web-12");
    }

    #[test]
    fn unpadded_numbers_letters_steps_and_several_ranges() {
        assert_eq!(expand("n[8:10]").unwrap(), ["n8", "n9", "n10"]);
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("x[0:6:3]").unwrap(), ["x0", "x3", "x6"]);
        assert_eq!(
            expand("r[1:2]-n[1:2].dc").unwrap(),
            ["r1-n1.dc", "r1-n2.dc", "r2-n1.dc", "r2-n2.dc"]
        );
        assert_eq!(expand("plain").unwrap(), ["plain"]);
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in [
            "web-[01:40",
            "web-01]",
            "web-[40:01]",
            "web-[1]",
            "web-[a:5]",
            "web-[1:5:0]",
            "web-[:5]",
            "web-[1:999999999]",
        ] {
            assert!(expand(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
