//! The Hub's HTTP API, one module per area: repo metadata and accounts (`repos`), file
//! downloads (`resolve`), uploads and commits (`upload`), and the test endpoints (`testhub`).

mod repos;
mod resolve;
mod testhub;
mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;
use base64::Engine as _;

use crate::config::{Knobs, Users};
use crate::error::HubError;
use crate::request_log::{self, RequestLog};
use crate::store::{RepoId, RepoRecord, Store};

pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub users: Users,
    pub log: RequestLog,
    pub knobs: Mutex<Knobs>,
    /// LFS upload tickets (the secret in an upload href) -> what may be uploaded there.
    pub tickets: Mutex<HashMap<String, upload::Ticket>>,
    pub addr: SocketAddr,
}

pub(crate) type Shared = Arc<AppState>;

pub(crate) enum Identity {
    Anonymous,
    User(String),
}

impl Identity {
    fn is_anonymous(&self) -> bool {
        matches!(self, Identity::Anonymous)
    }
}

impl AppState {
    /// Who is asking: no `Authorization`, or a known token (Bearer, or Basic's password). An
    /// unknown token is an error, as on the Hub, even for public content.
    fn identify(&self, headers: &HeaderMap) -> Result<Identity, HubError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Identity::Anonymous);
        };
        let value = value
            .to_str()
            .map_err(|_| HubError::invalid_credentials())?;
        let token = if let Some(token) = value.strip_prefix("Bearer ") {
            token.trim().to_string()
        } else if let Some(encoded) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| HubError::invalid_credentials())?;
            let text = String::from_utf8(decoded).map_err(|_| HubError::invalid_credentials())?;
            text.split_once(':')
                .map(|(_, password)| password.to_string())
                .ok_or_else(HubError::invalid_credentials)?
        } else {
            return Err(HubError::invalid_credentials());
        };
        self.users
            .user_for_token(&token)
            .map(|user| Identity::User(user.to_string()))
            .ok_or_else(HubError::invalid_credentials)
    }

    fn is_writer(&self, identity: &Identity, repo: &RepoId) -> bool {
        match identity {
            Identity::Anonymous => false,
            Identity::User(user) => self.users.can_write(user, repo),
        }
    }

    /// The repo, if this caller may see it (public, or private and theirs).
    fn check_read(&self, identity: &Identity, repo: &RepoId) -> Result<RepoRecord, HubError> {
        let not_found = || HubError::repo_not_found(identity.is_anonymous());
        let record = self.store.record(repo).map_err(|_| not_found())?;
        if record.settings.private && !self.is_writer(identity, repo) {
            return Err(not_found());
        }
        Ok(record)
    }

    /// File content of a gated repo needs a granted user (or a writer).
    fn check_gate(
        &self,
        record: &RepoRecord,
        identity: &Identity,
        repo: &RepoId,
    ) -> Result<(), HubError> {
        if record.settings.gated.is_none() || self.is_writer(identity, repo) {
            return Ok(());
        }
        match identity {
            Identity::User(user) if record.settings.granted.contains(user) => Ok(()),
            _ => Err(HubError::gated(&repo.to_string(), identity.is_anonymous())),
        }
    }

    fn check_write(&self, identity: &Identity, repo: &RepoId) -> Result<RepoRecord, HubError> {
        if identity.is_anonymous() {
            return Err(HubError::login_required());
        }
        let record = self.check_read(identity, repo)?;
        if !self.is_writer(identity, repo) {
            return Err(HubError::forbidden(format!(
                "You don't have the rights to write to {repo}"
            )));
        }
        Ok(record)
    }

    /// `http://<Host>` as the client addressed us, for URLs we hand out.
    fn base_url(&self, headers: &HeaderMap) -> String {
        match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("http://{host}"),
            None => format!("http://{}", self.addr),
        }
    }
}

/// A repo id from the path; an invalid one is a missing repo.
fn repo_id(identity: &Identity, namespace: &str, name: &str) -> Result<RepoId, HubError> {
    RepoId::new(namespace, name).map_err(|_| HubError::repo_not_found(identity.is_anonymous()))
}

pub(crate) fn router(state: Shared) -> Router {
    let log = state.log.clone();
    Router::new()
        .route("/api/whoami-v2", get(repos::whoami))
        .route("/api/repos/create", post(repos::create_repo))
        .route("/api/validate-yaml", post(repos::validate_yaml))
        .route("/api/models/{org}/{name}", get(repos::model_info))
        .route(
            "/api/models/{org}/{name}/revision/{rev}",
            get(repos::model_info_at),
        )
        .route("/api/models/{org}/{name}/tree/{rev}", get(repos::tree_root))
        .route(
            "/api/models/{org}/{name}/tree/{rev}/{*path}",
            get(repos::tree_at),
        )
        .route(
            "/api/models/{org}/{name}/paths-info/{rev}",
            post(repos::paths_info),
        )
        .route(
            "/api/models/{org}/{name}/tag/{rev}",
            post(repos::create_tag),
        )
        .route(
            "/api/models/{org}/{name}/branch/{branch}",
            post(repos::create_branch),
        )
        .route(
            "/api/models/{org}/{name}/preupload/{rev}",
            post(upload::preupload),
        )
        .route(
            "/api/models/{org}/{name}/commit/{rev}",
            post(upload::commit),
        )
        .route(
            "/{org}/{name}/info/lfs/objects/batch",
            post(upload::lfs_batch),
        )
        .route(
            "/{org}/{name}/info/lfs/objects/verify",
            post(upload::lfs_verify),
        )
        .route("/_testhub/lfs-upload/{ticket}", put(upload::lfs_put))
        .route(
            "/{org}/{name}/resolve/{rev}/{*path}",
            get(resolve::resolve).head(resolve::resolve),
        )
        .route(
            "/_testhub/requests",
            get(testhub::requests).delete(testhub::clear_requests),
        )
        .route(
            "/_testhub/knobs",
            get(testhub::knobs).put(testhub::set_knobs),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(log, request_log::record))
        .with_state(state)
}
