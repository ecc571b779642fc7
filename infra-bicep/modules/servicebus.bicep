// Service Bus (Standard: duplicate detection needs it) with the OCR queue and the staging slot's
// own queue. SAS keys are off; the app's identity may send and receive on these queues only.
param baseName string
param location string
param tags object
param principalId string

var dataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var dataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: take('${baseName}-sb', 50)
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

// Lock duration covers the slowest OCR (5 pages at the timeout); duplicate detection absorbs a
// republished event (same MessageId) within an hour; after 10 deliveries a message is
// dead-lettered for an operator.
var queueProperties = {
  lockDuration: 'PT5M'
  maxDeliveryCount: 10
  requiresDuplicateDetection: true
  duplicateDetectionHistoryTimeWindow: 'PT1H'
  deadLetteringOnMessageExpiration: true
  defaultMessageTimeToLive: 'P14D'
  maxSizeInMegabytes: 1024
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: 'invoice-ocr'
  properties: queueProperties
}

resource stagingQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: 'invoice-ocr-staging'
  properties: queueProperties
}

resource sendProduction 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, dataSender)
  scope: queue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSender)
  }
}

resource receiveProduction 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, dataReceiver)
  scope: queue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataReceiver)
  }
}

resource sendStaging 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stagingQueue.id, principalId, dataSender)
  scope: stagingQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSender)
  }
}

resource receiveStaging 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stagingQueue.id, principalId, dataReceiver)
  scope: stagingQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataReceiver)
  }
}

output namespaceFqdn string = '${namespace.name}.servicebus.windows.net'
