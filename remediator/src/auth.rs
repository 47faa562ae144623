//! Webhook authentication: a bearer token or basic auth, compared in constant
//! time against the secrets read from files.

use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::config::Credentials;

/// The verdict on a request's `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No usable credentials were sent: 401 with a challenge.
    Missing,
    /// Credentials were sent and are wrong: 403.
    Denied,
}

/// Checks `header` (the raw `Authorization` value) against `creds`. With no
/// credentials configured (`--web.insecure-no-auth`) everything is allowed.
pub fn check(creds: &Credentials, header: Option<&[u8]>) -> Verdict {
    if creds.is_empty() {
        return Verdict::Allowed;
    }
    let Some(header) = header else {
        return Verdict::Missing;
    };
    let Some((scheme, value)) = split_scheme(header) else {
        return Verdict::Missing;
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return match &creds.bearer {
            Some(token) if bool::from(value.ct_eq(token.expose())) => Verdict::Allowed,
            Some(_) => Verdict::Denied,
            None => Verdict::Missing,
        };
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let Some((user, password)) = &creds.basic else {
            return Verdict::Missing;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
            return Verdict::Denied;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return Verdict::Denied;
        };
        let user_ok = decoded[..colon].ct_eq(user.as_bytes());
        let password_ok = decoded[colon + 1..].ct_eq(password.expose());
        return if bool::from(user_ok & password_ok) {
            Verdict::Allowed
        } else {
            Verdict::Denied
        };
    }
    Verdict::Missing
}

fn split_scheme(header: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = header.iter().position(|b| *b == b' ')?;
    let value = &header[space + 1..];
    let start = value.iter().position(|b| *b != b' ')?;
    Some((&header[..space], &value[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn creds() -> Credentials {
        Credentials {
            bearer: Some(Secret::new("tok")),
            basic: Some(("am".to_string(), Secret::new("pw"))),
        }
    }

    #[test]
    fn verdicts() {
        let c = creds();
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(check(&c, Some(b"Bearer tok")), Verdict::Allowed);
        assert_eq!(check(&c, Some(b"bearer  tok")), Verdict::Allowed);
        assert_eq!(check(&c, Some(b"Bearer tok2")), Verdict::Denied);
        assert_eq!(check(&c, Some(basic("am:pw").as_bytes())), Verdict::Allowed);
        assert_eq!(check(&c, Some(basic("am:px").as_bytes())), Verdict::Denied);
        assert_eq!(check(&c, Some(basic("xx:pw").as_bytes())), Verdict::Denied);
        assert_eq!(check(&c, None), Verdict::Missing);
        assert_eq!(check(&c, Some(b"Digest x")), Verdict::Missing);
        assert_eq!(check(&Credentials::default(), None), Verdict::Allowed);
    }
}
