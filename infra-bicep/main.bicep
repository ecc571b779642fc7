// The warranty service on Azure: everything between `git push` and a running, recoverable
// production. Deployed per environment with a parameters file:
//   az deployment group create -g <rg> -f infra-bicep/main.bicep -p infra-bicep/params/prod.bicepparam \
//     -p productionImage=<acr>.azurecr.io/warranty@sha256:... stagingImage=<same or newer>
// The running images are parameters the deploy workflow owns (it passes what runs now), so
// re-applying this template after a swap never puts an old image back.
targetScope = 'resourceGroup'

@description('Short environment name: dev, prod.')
@allowed(['dev', 'prod'])
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Prefix of resource names (lowercase letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'warranty'

@description('Image the production slot runs (repository@digest). The deploy workflow passes the running one.')
param productionImage string

@description('Image the staging slot runs (repository@digest).')
param stagingImage string

@description('Entra ID tenant that issues the mobile app tokens.')
param tenantId string = tenant().tenantId

// The tokens the API accepts follow from one parameter set: the tenant, the API's app
// registration (its client id and App ID URI) and the access-token version that registration
// asks Entra ID for (its manifest's `accessTokenAcceptedVersion`, Graph
// `api.requestedAccessTokenVersion`; null or 1 gives v1.0 tokens, 2 gives v2.0 tokens, whatever
// endpoint the client used). The gateway's policy and the app's own check are both derived from
// `tokenIssuer` and `tokenAudiences` below (docs/decisions/0024-the-way-in.md).
@description('Client id (GUID) of the API\'s Entra ID app registration: the `aud` of a v2.0 access token.')
param apiClientId string

@description('App ID URI of the API\'s app registration (e.g. api://warranty): the `aud` of a v1.0 token requested for it.')
param apiAppIdUri string

@description('The access-token version the API\'s app registration asks for (accessTokenAcceptedVersion).')
@allowed([1, 2])
param accessTokenVersion int = 2

@description('Value of the function key the gateway sends (host key `gateway`). Generate it once (for example `openssl rand -base64 48`), keep it in your secret store and pass the same value to every deployment: a new value rotates the key.')
@secure()
@minLength(32)
param gatewayFunctionKey string

@description('Value of the Functions host\'s master key, kept with the other host keys in Key Vault (the host would generate its own set, and drop the gateway key, if it found none). Same handling as gatewayFunctionKey.')
@secure()
@minLength(32)
param hostMasterKey string

@description('Where alerts go.')
param alertEmail string

@description('API Management tier. Only v2 tiers: Consumption has no rate-limit-by-key, and its rate-limit counts only calls with a subscription key, which a phone, a QR code and a calendar app do not send (decision 0024).')
@allowed(['BasicV2', 'StandardV2'])
param apimSku string = 'BasicV2'

@description('Publisher e-mail API Management requires.')
param apimPublisherEmail string

@description('Requests per user (token oid) per minute at the gateway.')
param rateLimitPerMinute int = 60

@description('Requests per client IP address per minute to the public operations (health, brands, the API document, card verification, calendar feeds).')
param publicRateLimitPerMinute int = 120

@description('Elastic Premium plan size (slots need Premium or Dedicated; Flex Consumption has none).')
@allowed(['EP1', 'EP2', 'EP3'])
param planSku string = 'EP1'

@description('Always-ready instances of the production slot (3 or more with zone redundancy).')
param minimumInstances int = 3

@description('Instances the plan may scale out to (Elastic Premium on Linux: at most 100).')
@minValue(1)
@maxValue(100)
param maximumInstances int = 20

@description('Analyze requests per second of the Document Intelligence resource (S0: 15 unless raised by a support request). The OCR concurrency per instance is derived from it and maximumInstances.')
@minValue(1)
param docIntelAnalyzeTps int = 15

@description('Spread the plan over availability zones.')
param zoneRedundant bool = true

@description('Autoscale ceiling (RU/s) of the products container (it scales between a tenth of this and this; 10,000 RU/s per physical partition). Decision 0009 says how the value was chosen.')
@minValue(1000)
param productsMaxThroughput int = 1000

@description('P95 latency SLO in milliseconds (alert and rollback threshold).')
param latencySloMs int = 500

@description('Failure-rate SLO in percent (alert and rollback threshold).')
param failureRateSloPercent int = 5

var suffix = uniqueString(resourceGroup().id, environmentName)

// What Entra ID puts in the access tokens the app registration gets (access-token claims
// reference): v2.0 tokens are issued by `https://login.microsoftonline.com/{tenant}/v2.0` with
// `aud` = the API's client id; v1.0 tokens by `https://sts.windows.net/{tenant}/` with `aud` =
// the App ID URI or the client id, whichever the client asked for. Public cloud.
var tokenIssuer = accessTokenVersion == 2 ? '${environment().authentication.loginEndpoint}${tenantId}/v2.0' : 'https://sts.windows.net/${tenantId}/'
var tokenAudiences = accessTokenVersion == 2 ? [apiClientId] : [apiAppIdUri, apiClientId]
var tokenMetadataUrl = accessTokenVersion == 2 ? '${environment().authentication.loginEndpoint}${tenantId}/v2.0/.well-known/openid-configuration' : '${environment().authentication.loginEndpoint}${tenantId}/.well-known/openid-configuration'
var tokenKeysUrl = accessTokenVersion == 2 ? '${environment().authentication.loginEndpoint}${tenantId}/discovery/v2.0/keys' : '${environment().authentication.loginEndpoint}${tenantId}/discovery/keys'
// The gateway's host name is its resource name's; the API's path there is the host's route
// prefix (`api`), so the public base URL and the host's routes share one `/api`.
var gatewayName = '${baseName}-apim-${suffix}'
var publicBaseUrl = 'https://${gatewayName}.azure-api.net/api'
var baseName = '${namePrefix}-${environmentName}'
var tags = {
  application: 'warranty'
  environment: environmentName
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: { baseName: baseName, location: location, tags: tags }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: { baseName: baseName, location: location, tags: tags }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    namePrefix: namePrefix
    suffix: suffix
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    baseName: '${baseName}-${suffix}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    productsMaxThroughput: productsMaxThroughput
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    baseName: '${baseName}-${suffix}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  params: {
    name: '${namePrefix}${environmentName}${suffix}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: take('kv-${namePrefix}-${environmentName}-${suffix}', 24)
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    gatewayFunctionKey: gatewayFunctionKey
    hostMasterKey: hostMasterKey
  }
}

module notificationHubs 'modules/notificationhubs.bicep' = {
  name: 'notificationhubs'
  params: {
    baseName: '${baseName}-${suffix}'
    location: location
    tags: tags
    keyVaultName: keyVault.outputs.name
  }
}

module docIntel 'modules/docintel.bicep' = {
  name: 'docintel'
  params: {
    name: '${baseName}-di-${suffix}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    baseName: baseName
    suffix: suffix
    location: location
    tags: tags
    planSku: planSku
    zoneRedundant: zoneRedundant
    minimumInstances: minimumInstances
    maximumInstances: maximumInstances
    docIntelAnalyzeTps: docIntelAnalyzeTps
    productionImage: productionImage
    stagingImage: stagingImage
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    hostStorageName: storage.outputs.hostStorageName
    invoiceBlobServiceUri: storage.outputs.invoiceBlobServiceUri
    cosmosEndpoint: cosmos.outputs.endpoint
    serviceBusNamespaceFqdn: serviceBus.outputs.namespaceFqdn
    docIntelEndpoint: docIntel.outputs.endpoint
    keyVaultUri: keyVault.outputs.uri
    notificationHubName: notificationHubs.outputs.hubName
    stagingNotificationHubName: notificationHubs.outputs.stagingHubName
    tokenIssuer: tokenIssuer
    tokenAudiences: tokenAudiences
    tokenKeysUrl: tokenKeysUrl
    publicBaseUrl: publicBaseUrl
  }
}

module gateway 'modules/apim.bicep' = {
  name: 'apim'
  params: {
    name: gatewayName
    location: location
    tags: tags
    sku: apimSku
    publisherEmail: apimPublisherEmail
    functionAppName: functionApp.outputs.name
    functionAppHostName: functionApp.outputs.defaultHostName
    publicBaseUrl: publicBaseUrl
    tokenIssuer: tokenIssuer
    tokenAudiences: tokenAudiences
    tokenMetadataUrl: tokenMetadataUrl
    functionKeySecretUri: keyVault.outputs.gatewayFunctionKeySecretUri
    keyVaultName: keyVault.outputs.name
    rateLimitPerMinute: rateLimitPerMinute
    publicRateLimitPerMinute: publicRateLimitPerMinute
    appInsightsId: monitoring.outputs.appInsightsId
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    baseName: baseName
    location: location
    tags: tags
    alertEmail: alertEmail
    appInsightsId: monitoring.outputs.appInsightsId
    latencySloMs: latencySloMs
    failureRateSloPercent: failureRateSloPercent
  }
}

output functionAppName string = functionApp.outputs.name
output stagingHostName string = functionApp.outputs.stagingHostName
output registryLoginServer string = registry.outputs.loginServer
output appInsightsId string = monitoring.outputs.appInsightsId
output gatewayUrl string = gateway.outputs.gatewayUrl
output publicBaseUrl string = publicBaseUrl
