// Two accounts: the Functions host's own storage (leases, timers, keys) and the invoices.
// Shared-key access is off on both; the app's identity holds data-plane roles only.
param namePrefix string
param suffix string
param location string
param tags object
param principalId string

var blobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var queueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var tableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

var common = {
  minimumTlsVersion: 'TLS1_2'
  supportsHttpsTrafficOnly: true
  allowBlobPublicAccess: false
  allowSharedKeyAccess: false
  defaultToOAuthAuthentication: true
  publicNetworkAccess: 'Enabled'
  networkAcls: {
    bypass: 'AzureServices'
    defaultAction: 'Allow'
  }
}

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take('${namePrefix}host${suffix}', 24)
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
  properties: common
}

resource data 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take('${namePrefix}data${suffix}', 24)
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_GZRS' }
  properties: common
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: data
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: { enabled: true, days: 30 }
    containerDeleteRetentionPolicy: { enabled: true, days: 30 }
    // The change feed (blob names and events, which point-in-time restore needs) is kept a
    // day longer than the restore window, not forever (docs/privacy.md).
    changeFeed: { enabled: true, retentionInDays: 30 }
    restorePolicy: { enabled: true, days: 29 }
  }
}

// Versioning keeps a blob's earlier versions, also after the blob is deleted (an erased user's
// invoices included): they are removed 30 days after they stop being current. The rule runs once
// a day (docs/privacy.md lists what stays and for how long).
resource dataLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: data
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'earlier-versions-expire'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'] }
            actions: { version: { delete: { daysAfterCreationGreaterThan: 30 } } }
          }
        }
      ]
    }
  }
}

// Production invoices, and the staging slot's own (its smoke tests never touch production data).
resource invoices 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: 'invoices'
  properties: { publicAccess: 'None' }
}

resource stagingInvoices 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: 'invoices-staging'
  properties: { publicAccess: 'None' }
}

// The Functions host needs blob (owner: it manages containers and leases), queue and table
// access on its own storage with an identity-based AzureWebJobsStorage.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(host.id, principalId, blobDataOwner)
  scope: host
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataOwner)
  }
}

resource hostQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(host.id, principalId, queueDataContributor)
  scope: host
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueDataContributor)
  }
}

resource hostTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(host.id, principalId, tableDataContributor)
  scope: host
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', tableDataContributor)
  }
}

// The app reads and writes invoices in its two containers only.
resource invoicesWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(invoices.id, principalId, blobDataContributor)
  scope: invoices
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
  }
}

resource stagingInvoicesWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stagingInvoices.id, principalId, blobDataContributor)
  scope: stagingInvoices
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
  }
}

output hostStorageName string = host.name
output invoiceBlobServiceUri string = data.properties.primaryEndpoints.blob
