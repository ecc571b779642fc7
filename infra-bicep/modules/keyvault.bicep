// Key Vault with RBAC (no access policies), soft delete and purge protection. The app holds
// Secrets User for Key Vault references in app settings. Every Azure service is reached with the
// managed identity; the secrets are `verification-key`, the HMAC key of the warranty cards'
// verification links, set once by an operator (README, "Configuration"), and the Functions host's
// keys (`AzureWebJobsSecretStorageType=keyvault`), written here by the deployment: the master key
// and the `gateway` function key that API Management sends. Both host keys are written because the
// host, finding no master key, generates a whole new set and deletes every other `host--` secret
// (KeyVaultSecretsRepository.ReadHostSecrets / WriteAsync).
param name string
param location string
param tags object
param principalId string
param logAnalyticsId string
@secure()
param gatewayFunctionKey string
@secure()
param hostMasterKey string

var secretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { bypass: 'AzureServices', defaultAction: 'Allow' }
  }
}

resource secretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, secretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit'
  scope: vault
  properties: {
    workspaceId: logAnalyticsId
    logs: [{ categoryGroup: 'audit', enabled: true }]
  }
}

resource masterKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'host--masterKey--master'
  properties: { value: hostMasterKey, contentType: 'Functions host master key' }
}

resource gatewayKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'host--functionKey--gateway'
  properties: { value: gatewayFunctionKey, contentType: 'Functions host key sent by API Management' }
}

output uri string = vault.properties.vaultUri
// Unversioned, so API Management's named value follows a rotation (it refreshes within 4 hours).
output gatewayFunctionKeySecretUri string = '${vault.properties.vaultUri}secrets/${gatewayKey.name}'
output name string = vault.name
