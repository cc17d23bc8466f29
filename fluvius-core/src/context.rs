//! The context a command runs in: who asks, for which tenant, through what.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;
use crate::name::validate_name;

/// Who sent a command and how. Stored with the command and copied into every event's
/// [`Metadata`](crate::Metadata).
///
/// ```
/// use fluvius_core::Context;
/// let ctx = Context::new().with_user("u-1").with_tenant("acme").with_header("x-request-id", "r-9");
/// assert_eq!(ctx.user_id.as_deref(), Some("u-1"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Context {
    /// The acting user.
    pub user_id: Option<String>,
    /// The tenant / organization the command acts for.
    pub tenant_id: Option<String>,
    /// The authentication realm.
    pub realm: Option<String>,
    /// Transport headers worth keeping (request ids, client versions, …).
    pub headers: BTreeMap<String, String>,
    /// The system or component that sent the command.
    pub source: Option<String>,
    /// How the command arrived (`"http"`, `"cli"`, `"saga"`, …).
    pub transport: Option<String>,
    /// The flow this command belongs to; defaults to the command id.
    pub correlation_id: Option<Uuid>,
    /// The message (event or command) that caused this command; defaults to the command id.
    pub causation_id: Option<Uuid>,
}

impl Context {
    /// Check the tenant and the user, when set, with [`validate_name`]: they are stored with
    /// every event.
    pub(crate) fn validate_names(&self) -> Result<()> {
        if let Some(tenant) = &self.tenant_id {
            validate_name("tenant", tenant)?;
        }
        if let Some(user) = &self.user_id {
            validate_name("user id", user)?;
        }
        Ok(())
    }

    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the acting user.
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Set the tenant.
    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Set the realm.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Set the source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Set the transport.
    pub fn with_transport(mut self, transport: impl Into<String>) -> Self {
        self.transport = Some(transport.into());
        self
    }

    /// Set the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Set the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }
}
