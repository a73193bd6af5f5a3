-- Grain: one row per user (user_key), ordered by user_key.
-- Reads: staging.stg_users.
-- Params: none.
-- Meaning: the rows of the persona feature matrix: the user at position i (from 0) is the user whose
--          user_index is i in persona_features.sql, which numbers users in this same order.
select user_key
from staging.stg_users
order by user_key
