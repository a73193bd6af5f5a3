-- Grain: one row per persona feature (feature), ordered by name.
-- Reads: staging.stg_touchpoints.
-- Params: none.
-- Meaning: the columns of the persona feature matrix: 'touchpoint:<name>' and 'stage:<name>' for
--          every touchpoint and stage in the steps, and the per-user numbers n_sessions,
--          n_channels, converted and revenue (see persona_features.sql). Touchpoint and stage are
--          never null in stg_touchpoints (an unmapped event keeps its event name and stage
--          'unmapped'; a channel step its channel).
with steps as not materialized (
    select touchpoint, stage
    from staging.stg_touchpoints
),

features as (
    select distinct 'touchpoint:' || touchpoint as feature from steps
    union
    select distinct 'stage:' || stage as feature from steps
    union
    select unnest(['n_sessions', 'n_channels', 'converted', 'revenue']) as feature
)

select feature
from features
order by feature
