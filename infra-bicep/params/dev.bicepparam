using '../main.bicep'

// Development: the cheapest shape that still has slots and the same wiring as production.
param environmentName = 'dev'
param apiAudience = 'api://warranty-dev'
param alertEmail = 'dev-alerts@warranty.example'
param apimPublisherEmail = 'platform@warranty.example'
param apimSku = 'Consumption'
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
