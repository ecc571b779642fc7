//! The products container on the in-memory Cosmos DB emulator that ships inside
//! `azure_data_cosmos` (feature `__internal_in_memory_emulator`). The whole SDK pipeline runs
//! (routing, retries, session tokens, ETags, unique keys, transactional batches); only the HTTP
//! transport is replaced by the emulator. Faults are injected with the SDK's own
//! fault-injection rules, each off until a test switches it on.

use std::sync::Arc;

use azure_core::credentials::Secret;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{ContainerProperties, UniqueKey, UniqueKeyPolicy};
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{AccountReference, CosmosClient, CosmosRuntimeBuilder, FeedScope, RoutingStrategy};
use azure_data_cosmos_driver::fault_injection::{
    FaultInjectionConditionBuilder, FaultInjectionErrorType, FaultInjectionResultBuilder, FaultInjectionRule,
    FaultInjectionRuleBuilder, FaultOperationType,
};
use azure_data_cosmos_driver::in_memory_emulator::{InMemoryEmulatorHttpClient, VirtualAccountConfig, VirtualRegion};
use futures_util::TryStreamExt;

const GATEWAY: &str = "https://eastus.emulator.local";
/// The emulator accepts any well-formed key.
const EMULATOR_KEY: &str = "dGVzdGtleQ==";

pub struct CosmosFixture {
    pub container: ContainerClient,
    /// Every operation answers 503 Service Unavailable.
    pub unavailable: Arc<FaultInjectionRule>,
    /// Writes answer 429 Too Many Requests.
    pub throttled: Arc<FaultInjectionRule>,
    /// Replaces answer 503 (the marker of a published event cannot be cleared).
    pub replace_unavailable: Arc<FaultInjectionRule>,
    /// Queries answer 503: what still works uses point operations only.
    pub queries_unavailable: Arc<FaultInjectionRule>,
}

fn rule(id: &str, error: FaultInjectionErrorType, ops: Option<FaultOperationType>) -> Arc<FaultInjectionRule> {
    let mut builder = FaultInjectionRuleBuilder::new(id, FaultInjectionResultBuilder::new().with_error(error).build());
    if let Some(op) = ops {
        builder = builder.with_condition(FaultInjectionConditionBuilder::new().with_operation_type(op).build());
    }
    let rule = Arc::new(builder.build());
    rule.disable();
    rule
}

impl CosmosFixture {
    /// A fresh emulated account with database `warranty` and container `products` as the
    /// Bicep template declares it: partition key `/userId`, unique key `/serialKey`.
    pub async fn new() -> Self {
        let unavailable = rule("unavailable", FaultInjectionErrorType::ServiceUnavailable, None);
        let throttled =
            rule("throttled", FaultInjectionErrorType::TooManyRequests, Some(FaultOperationType::CreateItem));
        let replace_unavailable = rule(
            "replace-unavailable",
            FaultInjectionErrorType::ServiceUnavailable,
            Some(FaultOperationType::ReplaceItem),
        );
        let queries_unavailable = rule(
            "queries-unavailable",
            FaultInjectionErrorType::ServiceUnavailable,
            Some(FaultOperationType::QueryItem),
        );
        let emulator = Arc::new(InMemoryEmulatorHttpClient::new(
            VirtualAccountConfig::new(vec![VirtualRegion::new("East US", GATEWAY.parse().unwrap())]).unwrap(),
        ));
        let runtime = CosmosRuntimeBuilder::from(emulator.runtime_builder_with_fault_rules(vec![
            unavailable.clone(),
            throttled.clone(),
            replace_unavailable.clone(),
            queries_unavailable.clone(),
        ]))
        .build()
        .await
        .expect("emulator runtime");
        let client = CosmosClient::builder()
            .with_default_operation_options(warranty::adapters::azure::cosmos::operation_options())
            .with_runtime(runtime)
            .build(
                AccountReference::with_authentication_key(GATEWAY.parse().unwrap(), Secret::new(EMULATOR_KEY)),
                RoutingStrategy::ProximityTo(Region::EAST_US),
            )
            .await
            .expect("emulator client");
        client.create_database("warranty", None).await.expect("database");
        let db = client.database_client("warranty");
        let properties = ContainerProperties::new("products", "/userId".into()).with_unique_key_policy(
            UniqueKeyPolicy::default().with_unique_key(UniqueKey::default().with_path("/serialKey")),
        );
        db.create_container(properties, None).await.expect("container");
        let container = db.container_client("products", None).await.expect("container client");
        Self { container, unavailable, throttled, replace_unavailable, queries_unavailable }
    }

    /// Ids of every product document, across partitions.
    pub async fn product_ids(&self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        self.container
            .query_items::<Id>("SELECT c.id FROM c WHERE c.type = 'product'", FeedScope::full_container(), None)
            .await
            .unwrap()
            .map_ok(|i| i.id)
            .try_collect()
            .await
            .unwrap()
    }

    /// Every document in the user's partition, by type: what is stored for them.
    pub async fn partition(&self, user: &str) -> Vec<(String, String)> {
        #[derive(serde::Deserialize)]
        struct Doc {
            id: String,
            #[serde(rename = "type")]
            doc_type: String,
        }
        self.container
            .query_items::<Doc>("SELECT c.id, c.type FROM c", FeedScope::partition(user.to_owned()), None)
            .await
            .unwrap()
            .map_ok(|d| (d.doc_type, d.id))
            .try_collect()
            .await
            .unwrap()
    }

    /// A raw document.
    pub async fn document(&self, user: &str, id: &str) -> Option<serde_json::Value> {
        match self.container.read_item(user.to_owned(), id, None).await {
            Ok(r) => Some(r.into_model().unwrap()),
            Err(e) if e.status().status_code() == azure_core::http::StatusCode::NotFound => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// Every document of type `doc_type` with id `id`, across partitions.
    pub async fn find_by_id(&self, doc_type: &str, id: &str) -> Vec<serde_json::Value> {
        let query = azure_data_cosmos::Query::from("SELECT * FROM c WHERE c.type = @type AND c.id = @id")
            .with_parameter("@type", doc_type)
            .unwrap()
            .with_parameter("@id", id)
            .unwrap();
        self.container
            .query_items::<serde_json::Value>(query, FeedScope::full_container(), None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    pub async fn upsert(&self, partition: &str, doc: &serde_json::Value) {
        let id = doc["id"].as_str().unwrap().to_owned();
        self.container.upsert_item(partition.to_owned(), &id, doc, None).await.unwrap();
    }

    pub async fn delete(&self, user: &str, id: &str) {
        self.container.delete_item(user.to_owned(), id, None).await.unwrap();
    }
}
