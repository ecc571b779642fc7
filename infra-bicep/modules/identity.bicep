// One user-assigned identity for both slots of the function app: a swap never changes which
// principal the running code is, so role assignments hold across releases.
param baseName string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${baseName}-app-id'
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
