// The function app (Linux container on Elastic Premium) with a `staging` slot.
//
// - Identity-based connections only: AzureWebJobsStorage__*, ServiceBusConnection__*,
//   CosmosDb__accountEndpoint, InvoiceStorage__blobServiceUri; no key in any setting.
// - Slot-sticky settings keep the staging slot off production data while it warms up: its own
//   Cosmos database, blob container, queue and notification hub, and its Service Bus trigger,
//   OCR sweeper and reminder timer disabled. A swap moves the code, never these settings.
// - The images are parameters (`productionImage`, `stagingImage`) the deploy workflow passes as
//   the digests running now, so re-applying this template never rolls an image back.
param baseName string
param suffix string
param location string
param tags object
param planSku string
@description('Spread the plan over availability zones. The plan then keeps at least 3 instances: the zone-redundancy guide for Elastic Premium sets `sku.capacity` to no less than 3 (its reliability page says 2; the larger is taken).')
param zoneRedundant bool = true
@description('Always-ready instances of the production slot (raised to 3 when zone-redundant).')
param minimumInstances int
@description('Instances the plan may scale out to.')
param maximumInstances int
@description('Analyze requests per second the Document Intelligence resource accepts (S0: 15 by default, raised by a support request).')
param docIntelAnalyzeTps int
param productionImage string
param stagingImage string
param identityId string
param identityClientId string
param appInsightsConnectionString string
param hostStorageName string
param invoiceBlobServiceUri string
param cosmosEndpoint string
param serviceBusNamespaceFqdn string
param docIntelEndpoint string
param keyVaultUri string
@description('The `iss` of the access tokens the API accepts (main.bicep derives it with the gateway\'s).')
param tokenIssuer string
@description('The `aud` values the API accepts.')
param tokenAudiences array
@description('Where the signing keys of those tokens are published.')
param tokenKeysUrl string
@description('The notification hub of each slot (its connection string is the Key Vault secret `notification-hub-connection`, `-staging` for the staging slot).')
param notificationHubName string
param stagingNotificationHubName string
@description('Public base URL of the API at the gateway: the links printed on warranty cards and served in calendar feeds.')
param publicBaseUrl string

// Zone redundancy needs the plan's capacity (and the app's always-ready count, from which the
// control plane derives it) at 3 or more; without it the plan is refused.
var alwaysReady = zoneRedundant ? max(3, minimumInstances) : minimumInstances

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${baseName}-plan'
  location: location
  tags: tags
  kind: 'elastic'
  sku: { name: planSku, tier: 'ElasticPremium', capacity: alwaysReady }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumInstances
    elasticScaleEnabled: true
    zoneRedundant: zoneRedundant
  }
}

// OCR readings in flight per instance (the Service Bus trigger's maxConcurrentCalls, overriding
// host.json's 2). A reading that asks Document Intelligence makes one analyze request and waits
// at least 2 s before its first poll, so N readings in flight make at most N / 2 analyze requests
// per second: across all instances that must stay within the resource's rate. S0's 15 per second
// and 20 instances give 1 per instance. A 429 past it is retried, never lost: this keeps it rare.
var ocrCallsPerInstance = max(1, min(2, (docIntelAnalyzeTps * 2) / maximumInstances))

// Settings common to both slots.
var shared = [
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
  { name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE', value: 'false' }
  { name: 'AzureWebJobsStorage__accountName', value: hostStorageName }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
  { name: 'ServiceBusConnection__fullyQualifiedNamespace', value: serviceBusNamespaceFqdn }
  { name: 'ServiceBusConnection__credential', value: 'managedidentity' }
  { name: 'ServiceBusConnection__clientId', value: identityClientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD;ClientId=${identityClientId}' }
  { name: 'WEBSITE_SWAP_WARMUP_PING_PATH', value: '/api/health' }
  { name: 'WEBSITE_SWAP_WARMUP_PING_STATUSES', value: '200' }
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  // The host keeps its keys in Key Vault (`KeyVaultSecretsRepository`: `host--masterKey--master`,
  // `host--functionKey--gateway`), where the deployment itself writes them: no step reads keys
  // from a host that has not started, and the gateway's named value references the same secret.
  { name: 'AzureWebJobsSecretStorageType', value: 'keyvault' }
  { name: 'AzureWebJobsSecretStorageKeyVaultUri', value: keyVaultUri }
  { name: 'AzureWebJobsSecretStorageKeyVaultClientId', value: identityClientId }
  { name: 'KEY_VAULT_URI', value: keyVaultUri }
  // Signs the verification links on warranty cards; one key for every instance and slot, so a
  // printed card stays valid across restarts, scale-out and swaps (see README, "Configuration").
  { name: 'WARRANTY_VERIFICATION_KEY', value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/verification-key/)' }
  // The host forwards the function app's own host name, which needs a function key: links for
  // people (card QR codes, calendar feeds) must name the gateway.
  { name: 'WARRANTY_PUBLIC_BASE_URL', value: publicBaseUrl }
  { name: 'WARRANTY_PRODUCT_STORE', value: 'cosmos' }
  { name: 'CosmosDb__accountEndpoint', value: cosmosEndpoint }
  { name: 'WARRANTY_INVOICE_STORE', value: 'blob' }
  { name: 'InvoiceStorage__blobServiceUri', value: invoiceBlobServiceUri }
  { name: 'WARRANTY_OCR_DELIVERY', value: 'servicebus' }
  { name: 'WARRANTY_OCR_DISPATCHER', value: 'false' }
  // Local recognisers first; Document Intelligence only for what they leave uncertain.
  { name: 'WARRANTY_OCR_ENGINE', value: 'document-intelligence' }
  { name: 'WARRANTY_DOCINTEL_ENDPOINT', value: docIntelEndpoint }
  { name: 'AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls', value: string(ocrCallsPerInstance) }
  { name: 'WARRANTY_JWKS_URL', value: tokenKeysUrl }
  { name: 'WARRANTY_JWT_ISSUER', value: tokenIssuer }
  { name: 'WARRANTY_JWT_AUDIENCE', value: join(tokenAudiences, ',') }
  { name: 'WARRANTY_JWT_USER_CLAIM', value: 'oid' }
  { name: 'WARRANTY_DATA_DIR', value: '/tmp/warranty' }
  { name: 'RUST_LOG', value: 'info' }
]

// The Functions host id names the slot's timer locks, schedule status and keys in the host's
// storage. By default it is the site name (plus '-<slot>' for a slot), lowercased and cut to 32
// characters (ScriptHostIdProvider): '<prefix>-<env>-func-<13 characters>' is already 32 long at
// the longest, so production and staging would share one id. Each slot gets its own, sticky.
var hostIdStem = take(toLower(replace('${baseName}${suffix}', '-', '')), 28)

// Slot-sticky: where each slot's data and messages live, and which triggers run.
var productionData = [
  { name: 'AzureFunctionsWebHost__hostid', value: '${hostIdStem}-prd' }
  { name: 'WARRANTY_COSMOS_DATABASE', value: 'warranty' }
  { name: 'WARRANTY_COSMOS_CONTAINER', value: 'products' }
  { name: 'WARRANTY_BLOB_CONTAINER', value: 'invoices' }
  { name: 'WARRANTY_OCR_QUEUE', value: 'invoice-ocr' }
  { name: 'AzureWebJobs.ProcessInvoiceOcr.Disabled', value: 'false' }
  { name: 'AzureWebJobs.RepublishPendingOcr.Disabled', value: 'false' }
  { name: 'AzureWebJobs.SendExpiryReminders.Disabled', value: 'false' }
  { name: 'WARRANTY_NOTIFICATION_HUB_NAME', value: notificationHubName }
  { name: 'WARRANTY_NOTIFICATION_HUB_CONNECTION_STRING', value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/notification-hub-connection/)' }
  { name: 'DEPLOYMENT_SLOT', value: 'production' }
]
var stagingData = [
  { name: 'AzureFunctionsWebHost__hostid', value: '${hostIdStem}-stg' }
  { name: 'WARRANTY_COSMOS_DATABASE', value: 'warranty-staging' }
  { name: 'WARRANTY_COSMOS_CONTAINER', value: 'products' }
  { name: 'WARRANTY_BLOB_CONTAINER', value: 'invoices-staging' }
  { name: 'WARRANTY_OCR_QUEUE', value: 'invoice-ocr-staging' }
  { name: 'AzureWebJobs.ProcessInvoiceOcr.Disabled', value: 'true' }
  { name: 'AzureWebJobs.RepublishPendingOcr.Disabled', value: 'true' }
  // A warming staging slot never sends reminders (a swap moves the code, not this setting).
  { name: 'AzureWebJobs.SendExpiryReminders.Disabled', value: 'true' }
  { name: 'WARRANTY_NOTIFICATION_HUB_NAME', value: stagingNotificationHubName }
  { name: 'WARRANTY_NOTIFICATION_HUB_CONNECTION_STRING', value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/notification-hub-connection-staging/)' }
  { name: 'DEPLOYMENT_SLOT', value: 'staging' }
]

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: '${baseName}-func-${suffix}'
  location: location
  tags: tags
  kind: 'functionapp,linux,container'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      linuxFxVersion: 'DOCKER|${productionImage}'
      appSettings: concat(shared, productionData)
      alwaysOn: false
      http20Enabled: true
      // 1.2, not 1.3: API Management documents TLS 1.3 to backends only for its classic tiers,
      // and the v2 tiers cannot change their protocol settings (decision 0024). Clients that
      // offer 1.3 still get it.
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      healthCheckPath: '/api/health'
      acrUseManagedIdentityCreds: true
      acrUserManagedIdentityID: identityClientId
      functionsRuntimeScaleMonitoringEnabled: false
      minimumElasticInstanceCount: alwaysReady
      preWarmedInstanceCount: 1
    }
  }
}

resource staging 'Microsoft.Web/sites/slots@2023-12-01' = {
  parent: app
  name: 'staging'
  location: location
  tags: tags
  kind: 'functionapp,linux,container'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      linuxFxVersion: 'DOCKER|${stagingImage}'
      appSettings: concat(shared, stagingData)
      alwaysOn: false
      http20Enabled: true
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      healthCheckPath: '/api/health'
      acrUseManagedIdentityCreds: true
      acrUserManagedIdentityID: identityClientId
      functionsRuntimeScaleMonitoringEnabled: false
      minimumElasticInstanceCount: 1
      preWarmedInstanceCount: 1
    }
  }
}

resource sticky 'Microsoft.Web/sites/config@2023-12-01' = {
  parent: app
  name: 'slotConfigNames'
  properties: {
    appSettingNames: [for s in productionData: s.name]
  }
}

// Basic-auth publishing (FTP, SCM) off: images come from the registry only.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
output stagingHostName string = staging.properties.defaultHostName
