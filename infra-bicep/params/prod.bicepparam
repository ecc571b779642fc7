using '../main.bicep'

// Production. The images are not here: deploy.yml passes the digests running now.
param environmentName = 'prod'
param apiAudience = 'api://warranty'
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
