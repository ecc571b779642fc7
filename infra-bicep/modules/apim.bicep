// API Management in front of the function app: JWT pre-validation, per-user rate limit,
// request size limit (policies/api.xml). The function app's HTTP triggers require a function
// key that only this gateway holds (a secret named value read from the host at deployment).
param name string
param location string
param tags object
@allowed(['Consumption', 'BasicV2', 'StandardV2'])
param sku string
param publisherEmail string
param functionAppName string
param functionAppHostName string
param tenantId string
param apiAudience string
param rateLimitPerMinute int
param appInsightsId string
param appInsightsConnectionString string

var login = environment().authentication.loginEndpoint
var perUser = '<rate-limit-by-key calls="${rateLimitPerMinute}" renewal-period="60" counter-key="@(((Jwt)context.Variables[&quot;jwt&quot;]).Claims.GetValueOrDefault(&quot;oid&quot;, context.Request.IpAddress))" />'
var perSubscription = '<rate-limit calls="${rateLimitPerMinute}" renewal-period="60" />'
var policy = replace(replace(replace(replace(loadTextContent('../policies/api.xml'),
  '__OPENID_CONFIG__', '${login}${tenantId}/v2.0/.well-known/openid-configuration'),
  '__AUDIENCE__', apiAudience),
  '__ISSUER__', '${login}${tenantId}/v2.0'),
  '__RATE_LIMIT__', sku == 'Consumption' ? perSubscription : perUser)

resource gateway 'Microsoft.ApiManagement/service@2023-09-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: { name: sku, capacity: sku == 'Consumption' ? 0 : 1 }
  identity: { type: 'SystemAssigned' }
  properties: {
    publisherEmail: publisherEmail
    publisherName: 'Warranty'
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
    value: listKeys('${functionApp.id}/host/default', '2023-12-01').functionKeys.default
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2023-09-01-preview' = {
  parent: gateway
  name: 'warranty-functions'
  properties: {
    protocol: 'http'
    url: 'https://${functionAppHostName}/api'
    resourceId: '${environment().resourceManager}${substring(functionApp.id, 1)}'
    tls: { validateCertificateChain: true, validateCertificateName: true }
  }
}

resource api 'Microsoft.ApiManagement/service/apis@2023-09-01-preview' = {
  parent: gateway
  name: 'warranty'
  properties: {
    displayName: 'Warranty'
    path: 'api'
    protocols: ['https']
    subscriptionRequired: false
    format: 'openapi+json'
    value: loadTextContent('../../docs/openapi.json')
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
