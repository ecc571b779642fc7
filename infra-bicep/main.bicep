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

@description('Audience (application ID URI) the API accepts, e.g. api://warranty.')
param apiAudience string

@description('Where alerts go.')
param alertEmail string

@description('API Management tier. Consumption has no rate-limit-by-key; a v2 tier enforces the per-user limit.')
@allowed(['Consumption', 'BasicV2', 'StandardV2'])
param apimSku string = 'Consumption'

@description('Publisher e-mail API Management requires.')
param apimPublisherEmail string

@description('Requests per user per minute at the gateway (per subscription on Consumption).')
param rateLimitPerMinute int = 60

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
    tenantId: tenantId
    apiAudience: apiAudience
    // The gateway's host name is its resource name's (declared below); its API path is `api`.
    publicBaseUrl: 'https://${baseName}-apim-${suffix}.azure-api.net/api'
  }
}

module gateway 'modules/apim.bicep' = {
  name: 'apim'
  params: {
    name: '${baseName}-apim-${suffix}'
    location: location
    tags: tags
    sku: apimSku
    publisherEmail: apimPublisherEmail
    functionAppName: functionApp.outputs.name
    functionAppHostName: functionApp.outputs.defaultHostName
    tenantId: tenantId
    apiAudience: apiAudience
    rateLimitPerMinute: rateLimitPerMinute
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
