//! `hub::whoami` against the local test Hub: the account, its organizations, and the errors.

use mlxk_core::hub::{self, HubClient, HubError};
use mlxk_core::secrets::Secret;
use mlxk_testhub::{HubConfig, TestHub};

const TOKEN: &str = "hf_whoamiTestTokenAbcdefghijklmnopqrs";

async fn hub(dir: &tempfile::TempDir) -> TestHub {
    let config = HubConfig::new(dir.path())
        .token(TOKEN, "alice")
        .org_member("mlx-knife-org", "alice");
    TestHub::start(config).await.unwrap()
}

#[tokio::test]
async fn names_the_user_and_their_organizations() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir).await;
    let user = hub::whoami(&hub.url(), &Secret::new(TOKEN)).await.unwrap();
    assert_eq!(user.name, "alice");
    assert_eq!(user.orgs.len(), 1);
    assert_eq!(user.orgs[0].name, "mlx-knife-org");
    assert_eq!(user.orgs[0].role.as_deref(), Some("write"));
    assert_eq!(user.token_role.as_deref(), Some("write"));

    let requests = hub.requests();
    assert_eq!(requests.len(), 1);
    assert!(!format!("{requests:?}").contains(TOKEN));
    hub.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir).await;
    let wrong = "hf_wrongTokenAbcdefghijklmnopqrstuvwx";
    let err = hub::whoami(&hub.url(), &Secret::new(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.kind(), "unauthorized");
    assert!(!format!("{err} {err:?}").contains(wrong));

    let anonymous = HubClient::new(&hub.url(), None).unwrap();
    let err = anonymous.whoami().await.unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err:?}");
    hub.stop().await;
}

#[tokio::test]
async fn an_unreachable_hub_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir).await;
    let url = hub.url();
    hub.stop().await;
    let err = hub::whoami(&url, &Secret::new(TOKEN)).await.unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "{err:?}");
    assert_eq!(err.kind(), "network_error");
    let text = format!("{err} {err:?}");
    assert!(text.contains(&url), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}
