// API Management in front of the function app (policies/api.xml): the Entra ID token checked on
// every authenticated operation, a per-user limit there and a per-address limit on the public
// ones, the length and size rules, and the function key only this gateway holds.
//
// URLs (decision 0024, checked by handlers/tests/api/gateway.rs): a phone calls
// `publicBaseUrl` + an operation of docs/openapi.json, whose paths are relative to the API's base
// (`/products`, `/verify/{token}`, …). API Management composes the public URL as gateway URL +
// API path (`api`) + operation template, and forwards to backend URL + operation template: the
// backend is `https://<app>/api`, the host's route prefix, so the host receives
// `/api/products`, which its `products` route matches.
param name string
param location string
param tags object
@allowed(['BasicV2', 'StandardV2'])
param sku string
param publisherEmail string
param functionAppName string
param functionAppHostName string
@description('The API as the phone calls it: https://<gateway>/api.')
param publicBaseUrl string
param tokenIssuer string
param tokenAudiences array
param tokenMetadataUrl string
@description('Key Vault secret (unversioned URI) holding the host key `gateway`.')
param functionKeySecretUri string
param keyVaultName string
param rateLimitPerMinute int
param publicRateLimitPerMinute int
param appInsightsId string
param appInsightsConnectionString string

// The API's path at the gateway is the last segment of the public base URL.
var apiPath = last(split(publicBaseUrl, '/'))
// The host's route prefix (function-app/host.json `extensions.http.routePrefix`) is the same word.
var backendUrl = 'https://${functionAppHostName}/${apiPath}'

var audienceElements = '<audience>${join(tokenAudiences, '</audience><audience>')}</audience>'
var policy = replace(replace(replace(replace(replace(replace(loadTextContent('../policies/api.xml'),
  '__OPENID_CONFIG__', tokenMetadataUrl),
  '__AUDIENCES__', audienceElements),
  '__ISSUERS__', '<issuer>${tokenIssuer}</issuer>'),
  '__USER_RATE_LIMIT__', string(rateLimitPerMinute)),
  '__PUBLIC_RATE_LIMIT__', string(publicRateLimitPerMinute)),
  '__BACKEND_ID__', 'warranty-functions')

// The document imported is docs/openapi.json with its `servers` entry set to the public URL, so
// the developer portal and anyone exporting it from the gateway see the URL the phone calls.
var document = union(loadJsonContent('../../docs/openapi.json'), { servers: [{ url: publicBaseUrl }] })

var secretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource gateway 'Microsoft.ApiManagement/service@2023-09-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: { name: sku, capacity: 1 }
  identity: { type: 'SystemAssigned' }
  properties: {
    publisherEmail: publisherEmail
    publisherName: 'Warranty'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The gateway reads the function key from Key Vault with its own identity.
resource gatewayReadsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, gateway.id, secretsUser)
  scope: vault
  properties: {
    principalId: gateway.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
  }
}

resource functionApp 'Microsoft.Web/sites@2023-12-01' existing = {
  name: functionAppName
}

resource functionKey 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: gateway
  name: 'function-key'
  properties: {
    displayName: 'function-key'
    secret: true
    keyVault: { secretIdentifier: functionKeySecretUri }
  }
  dependsOn: [gatewayReadsSecrets]
}

resource backend 'Microsoft.ApiManagement/service/backends@2023-09-01-preview' = {
  parent: gateway
  name: 'warranty-functions'
  properties: {
    protocol: 'http'
    url: backendUrl
    resourceId: '${environment().resourceManager}${substring(functionApp.id, 1)}'
    tls: { validateCertificateChain: true, validateCertificateName: true }
  }
}

resource api 'Microsoft.ApiManagement/service/apis@2023-09-01-preview' = {
  parent: gateway
  name: 'warranty'
  properties: {
    displayName: 'Warranty'
    path: apiPath
    serviceUrl: backendUrl
    protocols: ['https']
    subscriptionRequired: false
    format: 'openapi+json'
    value: string(document)
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2023-09-01-preview' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: policy
  }
  dependsOn: [functionKey, backend]
}

resource logger 'Microsoft.ApiManagement/service/loggers@2023-09-01-preview' = {
  parent: gateway
  name: 'appinsights'
  properties: {
    loggerType: 'applicationInsights'
    resourceId: appInsightsId
    credentials: { connectionString: appInsightsConnectionString }
  }
}

output gatewayUrl string = gateway.properties.gatewayUrl
