// Cosmos DB for NoSQL: database `warranty` with container `products` (partition /userId,
// unique key /serialKey per user, TTL on for idempotency records), and `warranty-staging` with the
// same container for the staging slot. Continuous backup gives point-in-time restore (see
// docs/runbooks/rollback.md). Keys are off: the app uses the built-in data contributor role.
param baseName string
param location string
param tags object
param principalId string

@description('Autoscale ceiling (RU/s) of the production products container; autoscale runs it between a tenth of this and this. Each 10,000 RU/s is one physical partition.')
@minValue(1000)
param productsMaxThroughput int

@description('Autoscale ceiling (RU/s) of the staging slot\'s products container.')
@minValue(1000)
param stagingMaxThroughput int = 1000

// Cosmos DB Built-in Data Contributor (data plane).
var dataContributor = '00000000-0000-0000-0000-000000000002'

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: take('${baseName}-cosmos', 44)
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      { locationName: location, failoverPriority: 0, isZoneRedundant: true }
    ]
    consistencyPolicy: { defaultConsistencyLevel: 'Session' }
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: { tier: 'Continuous30Days' }
    }
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

var containerDefinition = {
  id: 'products'
  partitionKey: { paths: ['/userId'], kind: 'Hash', version: 2 }
  uniqueKeyPolicy: { uniqueKeys: [{ paths: ['/serialKey'] }] }
  defaultTtl: -1
  indexingPolicy: {
    indexingMode: 'consistent'
    includedPaths: [
      { path: '/type/?' }
      { path: '/serialKey/?' }
      { path: '/sortKey/?' }
      { path: '/pendingOcrSince/?' }
      // Expiry reminders: products whose next reminder is due, deliveries due, unread ones.
      { path: '/nextReminderAt/?' }
      { path: '/nextDeliveryAt/?' }
      { path: '/unread/?' }
    ]
    excludedPaths: [{ path: '/*' }]
  }
}

// Throughput is the container's own (dedicated autoscale), not shared by the database: a shared
// database's throughput is spread over at most 25 containers' partitions and cannot be raised
// for the one that carries the load. Decision 0009 justifies the partition key.
resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: 'warranty'
  properties: {
    resource: { id: 'warranty' }
  }
}

resource products 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'products'
  properties: {
    resource: containerDefinition
    options: { autoscaleSettings: { maxThroughput: productsMaxThroughput } }
  }
}

resource stagingDatabase 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: 'warranty-staging'
  properties: {
    resource: { id: 'warranty-staging' }
  }
}

resource stagingProducts 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: stagingDatabase
  name: 'products'
  properties: {
    resource: containerDefinition
    options: { autoscaleSettings: { maxThroughput: stagingMaxThroughput } }
  }
}

resource appDataAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, principalId, dataContributor)
  properties: {
    principalId: principalId
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${dataContributor}'
    scope: account.id
  }
}

output endpoint string = account.properties.documentEndpoint
