// Azure Notification Hubs for expiry reminders: one namespace, a hub per slot (production and
// staging never push to each other's devices), each with a Listen+Send rule for the app.
//
// Notification Hubs' runtime operations (installations, sends) accept only SAS tokens, not
// Microsoft Entra ID, so the app cannot use its managed identity here. The rule's connection
// string is written to Key Vault and reaches the app as a Key Vault reference; no key is in any
// app setting, template output or log. The rule has no Manage right.
param baseName string
param location string
param tags object
param keyVaultName string
@description('When the stored connection strings expire (Unix seconds): a year after this deployment, which writes them again.')
param secretExpiry int = dateTimeToEpoch(dateTimeAdd(utcNow(), 'P1Y'))

resource namespace 'Microsoft.NotificationHubs/namespaces@2023-09-01' = {
  name: take('${baseName}-nh', 50)
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: {
    namespaceType: 'NotificationHub'
  }
}

resource hub 'Microsoft.NotificationHubs/namespaces/notificationHubs@2023-09-01' = {
  parent: namespace
  name: 'warranty'
  location: location
  tags: tags
  properties: {}
}

resource stagingHub 'Microsoft.NotificationHubs/namespaces/notificationHubs@2023-09-01' = {
  parent: namespace
  name: 'warranty-staging'
  location: location
  tags: tags
  properties: {}
}

resource appRule 'Microsoft.NotificationHubs/namespaces/notificationHubs/AuthorizationRules@2023-09-01' = {
  parent: hub
  name: 'app-listen-send'
  properties: { rights: ['Listen', 'Send'] }
}

resource stagingAppRule 'Microsoft.NotificationHubs/namespaces/notificationHubs/AuthorizationRules@2023-09-01' = {
  parent: stagingHub
  name: 'app-listen-send'
  properties: { rights: ['Listen', 'Send'] }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'notification-hub-connection'
  properties: {
    value: appRule.listKeys().primaryConnectionString
    contentType: 'Notification Hubs connection string'
    attributes: { exp: secretExpiry }
  }
}

resource stagingSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'notification-hub-connection-staging'
  properties: {
    value: stagingAppRule.listKeys().primaryConnectionString
    contentType: 'Notification Hubs connection string'
    attributes: { exp: secretExpiry }
  }
}

output hubName string = hub.name
output stagingHubName string = stagingHub.name
