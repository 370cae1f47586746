use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::RepoId;

/// How a [`crate::TestHub`] runs. Token values never appear in `Debug` output or in logs.
#[derive(Clone)]
pub struct HubConfig {
    /// Where the repos live (see [`crate::store`]); created if missing, reused if present.
    pub root: PathBuf,
    pub host: IpAddr,
    /// 0 picks a free port (see [`crate::TestHub::url`]).
    pub port: u16,
    pub users: Users,
    pub knobs: Knobs,
}

impl HubConfig {
    /// Loopback, a free port, no users, no knobs.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HubConfig {
            root: root.into(),
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            users: Users::default(),
            knobs: Knobs::default(),
        }
    }

    /// `token` authenticates as `user` (`Authorization: Bearer <token>`, or as the password of
    /// HTTP Basic auth as git does).
    pub fn token(mut self, token: &str, user: &str) -> Self {
        self.users
            .tokens
            .insert(token.to_string(), user.to_string());
        self
    }

    /// `user` may read and write the repos of the organization `org`.
    pub fn org_member(mut self, org: &str, user: &str) -> Self {
        self.users
            .orgs
            .entry(org.to_string())
            .or_default()
            .push(user.to_string());
        self
    }
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("root", &self.root)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("users", &self.users)
            .field("knobs", &self.knobs)
            .finish()
    }
}

/// Who exists: tokens and organization memberships. A user writes to the namespace of the same
/// name and to the organizations they belong to; nobody else does.
#[derive(Clone, Default)]
pub struct Users {
    /// token -> user name
    pub tokens: BTreeMap<String, String>,
    /// organization -> members
    pub orgs: BTreeMap<String, Vec<String>>,
}

impl Users {
    pub fn user_for_token(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(String::as_str)
    }

    pub fn can_write(&self, user: &str, repo: &RepoId) -> bool {
        repo.namespace == user
            || self
                .orgs
                .get(&repo.namespace)
                .is_some_and(|members| members.iter().any(|m| m == user))
    }

    pub fn orgs_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.orgs
            .iter()
            .filter(move |(_, members)| members.iter().any(|m| m == user))
            .map(|(org, _)| org.as_str())
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&String> = self.tokens.values().collect();
        f.debug_struct("Users")
            .field(
                "tokens",
                &format_args!("<{} redacted> for {:?}", users.len(), users),
            )
            .field("orgs", &self.orgs)
            .finish()
    }
}

/// Test switches for file downloads (`GET .../resolve/...`) and LFS uploads, changeable while
/// running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Knobs {
    /// Serve file bodies at about this many bytes per second.
    pub throttle_bytes_per_sec: Option<u64>,
    /// Abort the connection after this many body bytes of a download response.
    pub fail_after_bytes: Option<u64>,
    /// How many download responses `fail_after_bytes` still cuts; `None` means all of them.
    pub fail_budget: Option<u32>,
    /// Hold each preupload and LFS upload request this long before answering it (a slow Hub:
    /// time for a test to cancel a push midway).
    pub upload_hold_ms: Option<u64>,
}
