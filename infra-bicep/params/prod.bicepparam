using '../main.bicep'

// Production. The images are not here: deploy.yml passes the digests running now.
param environmentName = 'prod'
// The API's app registration (Entra ID): its client id, its App ID URI, and the access-token
// version its manifest asks for (accessTokenAcceptedVersion: 2).
param apiClientId = readEnvironmentVariable('API_CLIENT_ID')
param apiAppIdUri = 'api://warranty'
param accessTokenVersion = 2
// The host's keys, generated once and kept in the operators' secret store (README, "Deploying").
param gatewayFunctionKey = readEnvironmentVariable('GATEWAY_FUNCTION_KEY')
param hostMasterKey = readEnvironmentVariable('HOST_MASTER_KEY')
param alertEmail = 'oncall@warranty.example'
param apimPublisherEmail = 'platform@warranty.example'
param apimSku = 'BasicV2'
param rateLimitPerMinute = 60
param planSku = 'EP1'
param minimumInstances = 3
param zoneRedundant = true
param latencySloMs = 500
param failureRateSloPercent = 5
// The products container's own autoscale ceiling (RU/s).
param productsMaxThroughput = 20000
param productionImage = readEnvironmentVariable('PRODUCTION_IMAGE')
param stagingImage = readEnvironmentVariable('STAGING_IMAGE')
