// The SLO alerts an operator is paged by (P95 latency, failure rate), the action group, and a
// workbook that overlays releases on latency and errors so a breach can be tied to a deploy.
// Releases are `customEvents` named `Release` that deploy.yml and rollback.yml write.
param baseName string
param location string
param tags object
param alertEmail string
param appInsightsId string
param latencySloMs int
param failureRateSloPercent int

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${baseName}-oncall'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'warranty'
    enabled: true
    emailReceivers: [
      { name: 'oncall', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
  }
}

resource latency 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-p95-latency'
  location: location
  tags: tags
  properties: {
    displayName: 'P95 latency > ${latencySloMs} ms'
    description: 'Warranty API: P95 request duration over the SLO for 10 minutes. Runbook: docs/runbooks/rollback.md'
    severity: 1
    enabled: true
    scopes: [appInsightsId]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: 'requests | where cloud_RoleName !endswith "staging" | summarize p95 = percentile(duration, 95)'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'p95'
          operator: 'GreaterThan'
          threshold: latencySloMs
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: { actionGroups: [actionGroup.id] }
  }
}

resource failures 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-failure-rate'
  location: location
  tags: tags
  properties: {
    displayName: 'Failure rate > ${failureRateSloPercent} %'
    description: 'Warranty API: share of failed requests (5xx) over the SLO for 10 minutes. Runbook: docs/runbooks/rollback.md'
    severity: 1
    enabled: true
    scopes: [appInsightsId]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: 'requests | where cloud_RoleName !endswith "staging" | summarize total = count(), failed = countif(toint(resultCode) >= 500) | where total >= 20 | extend rate = 100.0 * failed / total'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'rate'
          operator: 'GreaterThan'
          threshold: failureRateSloPercent
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: { actionGroups: [actionGroup.id] }
  }
}

// A reminder delivery given up after its retries (the app logs each one): someone was not told
// their warranty ends. Never expected; one is enough to page.
resource deadReminders 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-reminder-dead-letters'
  location: location
  tags: tags
  properties: {
    displayName: 'Expiry reminders dead-lettered'
    description: 'A reminder delivery (push or webhook) failed every attempt. See the trace for the reminder id, channel and reason; Notification Hubs quota or credentials are the usual causes.'
    severity: 2
    enabled: true
    scopes: [appInsightsId]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: 'traces | where cloud_RoleName !endswith "staging" | where message has "reminder delivery dead-lettered" | summarize dead = count()'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'dead'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: { actionGroups: [actionGroup.id] }
  }
}

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      content: { json: '## Warranty API: releases against latency and errors\nVertical markers are releases (`customEvents` named `Release`, written by deploy.yml and rollback.yml).' }
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        title: 'P95 latency (ms) and releases'
        query: 'let releases = customEvents | where name == "Release" | project timestamp, release = strcat(tostring(customDimensions.imageTag), " (", tostring(customDimensions.mode), ")"); requests | summarize p95 = percentile(duration, 95) by bin(timestamp, 5m) | join kind=fullouter (releases | summarize release = make_set(release) by timestamp = bin(timestamp, 5m)) on timestamp | project timestamp = coalesce(timestamp, timestamp1), p95, release = tostring(release) | order by timestamp asc'
        size: 0
        timeContext: { durationMs: 86400000 }
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        title: 'Failure rate (%) and releases'
        query: 'let releases = customEvents | where name == "Release" | summarize release = make_set(tostring(customDimensions.imageTag)) by timestamp = bin(timestamp, 5m); requests | summarize rate = 100.0 * countif(toint(resultCode) >= 500) / count() by bin(timestamp, 5m) | join kind=fullouter releases on timestamp | project timestamp = coalesce(timestamp, timestamp1), rate, release = tostring(release) | order by timestamp asc'
        size: 0
        timeContext: { durationMs: 86400000 }
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        title: 'Releases'
        query: 'customEvents | where name == "Release" | project timestamp, imageTag = tostring(customDimensions.imageTag), digest = tostring(customDimensions.digest), mode = tostring(customDimensions.mode), actor = tostring(customDimensions.actor), run = tostring(customDimensions.runUrl) | order by timestamp desc'
        size: 0
        timeContext: { durationMs: 2592000000 }
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'table'
      }
    }
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, baseName, 'releases-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Warranty: releases vs. SLOs'
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(workbookContent)
  }
}

output actionGroupId string = actionGroup.id
