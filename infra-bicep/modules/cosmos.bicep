// Cosmos DB for NoSQL: database `warranty` with container `products` (partition /userId,
// unique key /serialKey per user, TTL on for idempotency records), and `warranty-staging` with the
// same container for the staging slot. Continuous backup gives point-in-time restore (see
// docs/runbooks/rollback.md). Keys are off: the app uses the built-in data contributor role.
param baseName string
param location string
param tags object
param principalId string

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

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: 'warranty'
  properties: {
    resource: { id: 'warranty' }
    options: { autoscaleSettings: { maxThroughput: 4000 } }
  }
}

resource products 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'products'
  properties: { resource: containerDefinition }
}

resource stagingDatabase 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: 'warranty-staging'
  properties: {
    resource: { id: 'warranty-staging' }
    options: { autoscaleSettings: { maxThroughput: 1000 } }
  }
}

resource stagingProducts 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: stagingDatabase
  name: 'products'
  properties: { resource: containerDefinition }
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
