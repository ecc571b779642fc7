using '../main.bicep'

// Development: the cheapest shape that still has slots and the same wiring as production.
param environmentName = 'dev'
// The API's app registration (Entra ID): its client id, its App ID URI, and the access-token
// version its manifest asks for (accessTokenAcceptedVersion: 2).
param apiClientId = readEnvironmentVariable('API_CLIENT_ID')
param apiAppIdUri = 'api://warranty-dev'
param accessTokenVersion = 2
// The host's keys, generated once and kept in the operators' secret store (README, "Deploying").
param gatewayFunctionKey = readEnvironmentVariable('GATEWAY_FUNCTION_KEY')
param hostMasterKey = readEnvironmentVariable('HOST_MASTER_KEY')
param alertEmail = 'dev-alerts@warranty.example'
param apimPublisherEmail = 'platform@warranty.example'
param apimSku = 'BasicV2'
param rateLimitPerMinute = 120
param planSku = 'EP1'
param minimumInstances = 1
param zoneRedundant = false
param latencySloMs = 500
param failureRateSloPercent = 5
// The products container's own autoscale ceiling (RU/s).
param productsMaxThroughput = 1000
param productionImage = readEnvironmentVariable('PRODUCTION_IMAGE')
param stagingImage = readEnvironmentVariable('STAGING_IMAGE')
