"""Hand-written parts of the bundled stage-1 counselling samples (written by us, no real client).

Each topic holds what clients say about it in their own words (`openers`, `details`) and what a
counsellor says back: reflections, normalising or practical suggestions, and open questions, plus a
second counsellor turn for multi-turn conversations. datamodules/samples/write_samples.py combines
them into every stage-1 sample file, each in its source's real layout.
"""

from __future__ import annotations

TOPICS: dict[str, dict[str, list[str]]] = {
    "work stress": {
        "openers": [
            "My boss keeps piling projects on me and I'm starting to dread Sunday nights.",
            "I work twelve-hour days and I still feel like I'm behind on everything.",
            "I snapped at a coworker today over something tiny and I can't stop replaying it.",
            "I think I'm burning out at my job but I can't afford to quit.",
            "Every time my phone buzzes with a work email my chest gets tight.",
        ],
        "details": [
            "I answer messages at eleven at night because I'm scared of looking lazy.",
            "My manager says everything is urgent, so nothing ever feels finished.",
            "I used to like this job. Now I just count the hours until Friday.",
        ],
        "reflections": [
            "It sounds like work has taken over most of your waking hours, and your body is telling you it has had enough.",
            "That dread before the week starts is often a sign that the load has been too heavy for too long.",
            "Feeling behind no matter how much you do is exhausting, and it makes sense that your patience runs thin.",
        ],
        "suggestions": [
            "One place to start is a clear end to the workday, even a small one, like closing the laptop at a set time and not reopening it.",
            "It can help to write down everything on your plate and mark what is truly urgent; often the list is shorter than the feeling.",
            "If it feels possible, a short, specific conversation with your manager about priorities can take some of the guessing away.",
        ],
        "questions": [
            "What would a manageable week look like for you?",
            "When did you last have an evening that felt like your own?",
            "What do you think would happen if you answered that email the next morning instead?",
        ],
        "follow_ups": [
            "Honestly I don't remember the last time I took a full weekend off.",
            "I'm afraid that if I slow down they'll replace me.",
        ],
        "second_replies": [
            "That fear of being replaced can keep people running long past empty. What evidence do you have about how your work is actually seen?",
            "Going that long without a real break would wear anyone down. What is one small piece of rest you could protect this week?",
        ],
    },
    "sleep": {
        "openers": [
            "I can't fall asleep before 3am, my mind just won't switch off.",
            "I wake up at 4 every morning and lie there worrying until the alarm goes off.",
            "I'm so tired during the day but the moment I get into bed I'm wide awake.",
            "I've been sleeping maybe four hours a night for weeks.",
            "I scroll on my phone in bed for hours because I dread the silence.",
        ],
        "details": [
            "I replay conversations from the day and think about everything I said wrong.",
            "I've started drinking more coffee just to get through the afternoons.",
            "My partner sleeps fine next to me and I end up resenting them for it.",
        ],
        "reflections": [
            "Lying awake while your thoughts race is one of the loneliest parts of the night.",
            "It sounds like your body is exhausted but your mind is still on duty when the lights go out.",
            "Weeks of short nights affect mood, patience and concentration, so it makes sense you feel worn thin.",
        ],
        "suggestions": [
            "Some people find it helps to write the worries down an hour before bed, so they have somewhere to go other than your head.",
            "Keeping the same wake-up time every day, even after a bad night, slowly helps your body find its rhythm again.",
            "If you have been awake for a long while, getting up and doing something quiet in dim light can break the link between bed and worry.",
        ],
        "questions": [
            "What tends to go through your mind when you are lying awake?",
            "What does the hour before bed usually look like for you?",
            "When did the sleep trouble start, and was anything else changing around then?",
        ],
        "follow_ups": [
            "Mostly it's money. I keep doing the sums in my head.",
            "It started when I changed shifts at work, I think.",
        ],
        "second_replies": [
            "Money worries have a way of getting louder at night, when there is nothing you can do about them. Would it help to set aside a time in the day to look at the numbers properly?",
            "Shift changes can throw the body clock off for a long time. How regular are your hours now?",
        ],
    },
    "anxiety": {
        "openers": [
            "I feel anxious all the time, even when nothing is wrong.",
            "My heart races and I feel like something terrible is about to happen.",
            "I cancel plans last minute because I get so nervous beforehand.",
            "I worry about everything, my health, my kids, money, all of it.",
            "I had what I think was a panic attack in the supermarket and now I'm scared to go back.",
        ],
        "details": [
            "My hands shake and I feel sick before I have to go anywhere new.",
            "I check my body for symptoms constantly and google them at night.",
            "People tell me to just relax but I don't know how.",
        ],
        "reflections": [
            "Living with a constant sense that something is about to go wrong is draining, even on quiet days.",
            "It sounds like your body's alarm system is going off when there is no fire, and that is frightening.",
            "Avoiding the places that scared you is a very human way to protect yourself, even though it can make the world feel smaller.",
        ],
        "suggestions": [
            "Slow breathing, with the out-breath longer than the in-breath, can tell your nervous system that you are safe enough right now.",
            "It may help to notice the worry and name it, \"there is the what-if again\", rather than arguing with every thought.",
            "Going back to feared places in small, planned steps usually shrinks the fear more than waiting until it fades on its own.",
        ],
        "questions": [
            "What do you notice first in your body when the anxiety starts?",
            "What do you tell yourself might happen in those moments?",
            "Is there a time of day or a place where the worry is quieter?",
        ],
        "follow_ups": [
            "My chest gets tight and I can't think straight.",
            "It's worst in the mornings before work.",
        ],
        "second_replies": [
            "A tight chest and foggy thinking are classic signs of the body's stress response; they feel dangerous but they pass. What helps you ride them out, even a little?",
            "Mornings can carry the whole day's worry at once. What does your morning routine look like at the moment?",
        ],
    },
    "loneliness": {
        "openers": [
            "I moved here a year ago and I still don't have a single friend.",
            "I'm surrounded by people at work but I feel completely alone.",
            "Weekends are the worst. I don't talk to anyone from Friday to Monday.",
            "All my friends have partners and kids now and I feel left behind.",
            "I don't know how to make friends as an adult, it feels impossible.",
        ],
        "details": [
            "I eat dinner in front of the TV every night and sometimes I don't speak out loud all day.",
            "I tried a running club once but nobody talked to me and I never went back.",
            "When I do see people I feel like I'm watching from behind glass.",
        ],
        "reflections": [
            "Loneliness can hurt as much as physical pain, and being around people does not always ease it.",
            "It sounds like the quiet of the weekends brings the loneliness right to the surface.",
            "Watching friends move into new stages of life can leave you feeling like you are standing still.",
        ],
        "suggestions": [
            "Friendships in adult life usually grow from seeing the same people regularly, so something weekly, like a class or a volunteer shift, tends to work better than one-off events.",
            "It can help to reach out to one person you have lost touch with; a short message often means more to them than you expect.",
            "Being kind to yourself about how slow this is matters; most adult friendships take months of small contact to form.",
        ],
        "questions": [
            "Who was the last person you felt really at ease with?",
            "What kind of connection do you miss most?",
            "What gets in the way when you think about reaching out?",
        ],
        "follow_ups": [
            "I guess I'm scared they'll think I'm needy.",
            "I had a close group at university but we drifted apart.",
        ],
        "second_replies": [
            "The fear of seeming needy keeps a lot of people quiet, and most of the people they miss are waiting for someone else to go first. What would a low-stakes first message look like?",
            "Drifting apart after university happens to so many people, and it is not a verdict on you. Is there anyone from that group you would like to hear from?",
        ],
    },
    "grief": {
        "openers": [
            "My dad died three months ago and everyone expects me to be over it.",
            "I lost my dog last week and I feel stupid for being this upset.",
            "My grandmother passed away and I didn't get to say goodbye.",
            "It's been a year since my sister died and it still hits me out of nowhere.",
            "I keep picking up my phone to call my mum and then remembering she's gone.",
        ],
        "details": [
            "I was at work when it happened and I keep thinking I should have been there.",
            "Sometimes I feel fine and then I feel guilty for feeling fine.",
            "I can't bring myself to clear out their room.",
        ],
        "reflections": [
            "Grief does not follow anyone else's timetable, and three months is very little time after losing a parent.",
            "The love you had does not stop when someone dies, so of course the loss hurts this much.",
            "Those moments when you reach for the phone show how woven into your days they were.",
        ],
        "suggestions": [
            "Many people find it helps to have one person they can talk to about the one they lost without having to hold it together.",
            "There is no deadline for sorting through their things; doing it slowly, or with someone, is allowed.",
            "Some find small rituals helpful, like writing them a letter or visiting a place you shared, to give the grief somewhere to go.",
        ],
        "questions": [
            "What do you miss most about them day to day?",
            "Who around you lets you talk about them?",
            "What has been the hardest moment since they died?",
        ],
        "follow_ups": [
            "People change the subject when I mention him.",
            "I feel like I'm the only one in my family still crying.",
        ],
        "second_replies": [
            "When people change the subject it can feel like the person is being erased. Would it help to tell someone directly that you want to talk about him?",
            "Everyone in a family grieves differently, and crying is not a sign you are doing it wrong. How does the rest of your family seem to cope?",
        ],
    },
    "breakup": {
        "openers": [
            "My girlfriend left me after five years and I don't know who I am without her.",
            "I keep checking my ex's Instagram even though it makes me feel worse.",
            "We broke up two months ago but I still cry every day.",
            "He ended things over text and I never got an explanation.",
            "I was the one who left, so why do I feel this awful?",
        ],
        "details": [
            "We had plans to buy a house together this year.",
            "All our friends are shared so I feel like I lost them too.",
            "I keep writing messages to him and deleting them.",
        ],
        "reflections": [
            "After years together, a breakup takes away not just the person but the future you had planned.",
            "It sounds like you are carrying the loss and the unanswered questions at the same time.",
            "Ending a relationship yourself can still bring real grief; being the one who left does not make it painless.",
        ],
        "suggestions": [
            "Muting or unfollowing for a while is not petty; it gives your mind a chance to stop reopening the wound.",
            "Writing the unsent messages in a notebook instead of your phone can let the words out without the risk.",
            "It may help to rebuild small routines that are yours alone, like a morning walk or a new class.",
        ],
        "questions": [
            "What do you find yourself missing most in the evenings?",
            "What would you want to ask him if you could?",
            "What parts of you got set aside during the relationship?",
        ],
        "follow_ups": [
            "I think I'd ask if any of it was real.",
            "I used to paint before we got together.",
        ],
        "second_replies": [
            "Wondering whether it was real is one of the most painful parts of an unexplained ending. What do you remember that felt real to you?",
            "That sounds like a part of you worth getting back. What would it take to pick up a brush again, even once?",
        ],
    },
    "family conflict": {
        "openers": [
            "My mother criticises my weight every time I visit.",
            "My parents fight constantly and I'm stuck in the middle.",
            "My brother borrowed money and never paid it back, and now the whole family is taking sides.",
            "I dread going home for the holidays because of my dad's drinking.",
            "My in-laws undermine every parenting decision we make.",
        ],
        "details": [
            "When I try to set a boundary they say I'm being dramatic.",
            "I'm thirty-four and I still feel like a child around them.",
            "My partner thinks I should cut them off but I can't imagine that.",
        ],
        "reflections": [
            "Hearing criticism from a parent can sting in a way no one else's words do.",
            "Being caught between two people you love puts you in an impossible spot.",
            "It sounds like the holidays bring back a lot of old tension along with the family.",
        ],
        "suggestions": [
            "A boundary can be small and concrete, like \"if the comments start, I'll go for a walk\", and you can hold it without winning the argument.",
            "It can help to decide before a visit how long you will stay and what you will do if things get tense.",
            "You do not have to choose between cutting them off and accepting everything; there is a lot of room in between.",
        ],
        "questions": [
            "What happens inside you when the criticism starts?",
            "What would a good-enough visit look like for you?",
            "How did disagreements get handled in your family growing up?",
        ],
        "follow_ups": [
            "I just go quiet and then cry in the car afterwards.",
            "Nobody ever talked about anything, we just pretended.",
        ],
        "second_replies": [
            "Going quiet and then letting it out alone sounds like a way you learned to keep the peace. What would you want to say if it felt safe?",
            "Growing up where things were never named can make speaking up now feel like breaking a rule. What would happen if you named one small thing?",
        ],
    },
    "self-esteem": {
        "openers": [
            "I feel like I'm not good at anything.",
            "Whenever someone compliments me I assume they're just being polite.",
            "I compare myself to everyone on social media and always come out worse.",
            "I hate how I look in photos, I untag myself from everything.",
            "I got a promotion and I'm convinced they'll realise I'm a fraud.",
        ],
        "details": [
            "My inner voice is really harsh, I'd never talk to a friend that way.",
            "I apologise for everything, even when it's not my fault.",
            "I grew up being told I was the difficult one.",
        ],
        "reflections": [
            "It sounds like there is a harsh critic inside you that gets the last word on everything you do.",
            "Brushing off compliments can be a way of protecting yourself from hoping too much.",
            "Feeling like a fraud after a success is common, and it often says more about how you were taught to see yourself than about your ability.",
        ],
        "suggestions": [
            "One exercise is to notice the critical thought and ask what you would say to a friend who said it about themselves.",
            "It may help to keep a short note each day of one thing you handled, however small, so the evidence is written down.",
            "Spending less time on the accounts that leave you feeling worse is a reasonable way to protect your mood.",
        ],
        "questions": [
            "Whose voice does that inner critic remind you of?",
            "What would it mean about you if you were good at something?",
            "When do you feel most like yourself?",
        ],
        "follow_ups": [
            "It sounds a lot like my father, actually.",
            "Maybe when I'm cooking for people.",
        ],
        "second_replies": [
            "Many of us carry a parent's voice long after we have left home. What do you think your father was trying to protect you from?",
            "Cooking for people is care made visible. What do you notice about yourself in those moments?",
        ],
    },
    "depression": {
        "openers": [
            "I've lost interest in everything I used to enjoy.",
            "Getting out of bed feels like climbing a mountain every morning.",
            "I don't feel sad exactly, I just feel empty.",
            "I haven't showered in four days and I feel disgusting but I can't make myself do it.",
            "Everything feels grey and pointless lately.",
        ],
        "details": [
            "I stopped answering my friends' messages because I have nothing to say.",
            "I sleep ten hours and still wake up exhausted.",
            "My flat is a mess and every dirty dish feels like proof that I'm failing.",
        ],
        "reflections": [
            "That emptiness, where even the things you loved feel flat, is one of the hardest parts of depression.",
            "When simple tasks feel like mountains, it is not laziness; your energy is genuinely low.",
            "It sounds like the days have lost their colour and it is hard to find a reason to start them.",
        ],
        "suggestions": [
            "Very small steps count: one glass of water, one window opened, one message answered.",
            "Depression often lifts a little when we do things before we feel like doing them, starting with something tiny and kind.",
            "If this has gone on for more than a couple of weeks, it is worth talking to a doctor as well; there are treatments that help.",
        ],
        "questions": [
            "How long have you been feeling this way?",
            "Is there any part of the day that feels a little lighter?",
            "Who knows how you have been feeling lately?",
        ],
        "follow_ups": [
            "About two months. Maybe longer if I'm honest.",
            "Nobody really. I don't want to be a burden.",
        ],
        "second_replies": [
            "Two months is a long time to carry this on your own. Have you been able to see a doctor, or would that feel like too much right now?",
            "Many people who feel this way worry about being a burden, and yet most friends would want to know. Is there one person you could tell a little?",
        ],
    },
    "parenting": {
        "openers": [
            "I yell at my kids and then feel like the worst mother in the world.",
            "My teenage son barely speaks to me anymore.",
            "My toddler has tantrums every day and I'm at the end of my rope.",
            "My daughter was diagnosed with ADHD and I don't know how to help her.",
            "I feel like I've lost myself since becoming a parent.",
        ],
        "details": [
            "My partner works away so it's mostly just me.",
            "I had a strict childhood and I swore I'd never be like my parents.",
            "Bedtime is a battle every single night.",
        ],
        "reflections": [
            "Losing your temper and then feeling guilty shows how much you care about getting this right.",
            "Teenagers pulling away can feel like a loss, even though it is often a normal part of growing up.",
            "Parenting mostly on your own with no break would stretch anyone's patience.",
        ],
        "suggestions": [
            "After a blow-up, a short repair, \"I shouted and I'm sorry, it wasn't your fault\", teaches children more than never getting it wrong.",
            "Teenagers often talk more side by side than face to face, in the car or while cooking, than when asked directly.",
            "Finding even an hour a week that belongs to you is not selfish; it is part of having anything left to give.",
        ],
        "questions": [
            "What tends to be happening just before you lose your temper?",
            "What was your relationship with him like a couple of years ago?",
            "What support do you have around you?",
        ],
        "follow_ups": [
            "Usually it's when I'm trying to get everyone out the door in the morning.",
            "My mum helps sometimes but she criticises everything.",
        ],
        "second_replies": [
            "Mornings pack a lot of pressure into a short time. What could be done the night before to take some of that off?",
            "Help that comes with criticism is tiring in its own way. Is there anyone else who could give you a break without the commentary?",
        ],
    },
    "relationship": {
        "openers": [
            "My husband and I only talk about bills and the kids now.",
            "My partner gets jealous whenever I go out with friends.",
            "We argue about the same thing over and over and never resolve it.",
            "I don't feel attracted to my wife anymore and I feel terrible about it.",
            "My boyfriend says I'm too sensitive whenever I bring something up.",
        ],
        "details": [
            "We used to laugh all the time. Now we're like flatmates.",
            "He checks my phone when he thinks I'm not looking.",
            "Every argument ends with one of us slamming a door.",
        ],
        "reflections": [
            "It sounds like the closeness has been squeezed out by the business of running a life together.",
            "Going round in the same argument is exhausting, and it often means something underneath has not been heard.",
            "Being told you are too sensitive whenever you raise something can make you doubt your own feelings.",
        ],
        "suggestions": [
            "Couples often start with one small, regular ritual that has nothing to do with logistics, like ten minutes together after the kids are in bed.",
            "When the same fight comes back, it can help to talk about it at a calm time, starting with what each of you is afraid of.",
            "Checking your phone without asking is a trust issue worth naming calmly; you are allowed to have private friendships.",
        ],
        "questions": [
            "What would you most like your partner to understand?",
            "When did you last feel close to each other?",
            "What usually happens right before the argument starts?",
        ],
        "follow_ups": [
            "I want him to know I'm lonely even when he's right there.",
            "Probably on holiday last summer.",
        ],
        "second_replies": [
            "Feeling lonely next to someone is a painful thing to say out loud. How do you imagine he would respond if you told him exactly that?",
            "What was different on that holiday that let you feel close again?",
        ],
    },
    "social anxiety": {
        "openers": [
            "I never know what to say at parties so I just stand in the corner.",
            "I rehearse every phone call before I make it.",
            "I blush whenever someone looks at me in a meeting.",
            "I turned down a job because it involved presenting.",
            "After every conversation I replay it and cringe for hours.",
        ],
        "details": [
            "I'm sure everyone can see how awkward I am.",
            "I leave events early and then feel lonely at home.",
            "I've started working from home just to avoid the office kitchen.",
        ],
        "reflections": [
            "It sounds like social situations feel like a performance where you are being judged.",
            "Replaying conversations afterwards keeps the discomfort going long after the moment has passed.",
            "Turning down something you wanted because of fear is a real cost, and it makes sense that it bothers you.",
        ],
        "suggestions": [
            "Shifting attention outward, to what the other person is saying, can quiet the self-monitoring that makes people freeze.",
            "People usually notice our nerves far less than we think; it can help to test that belief gently.",
            "Small, repeated practice, like one question to a colleague a day, builds confidence more than waiting to feel ready.",
        ],
        "questions": [
            "What do you imagine people are thinking when you are quiet?",
            "What would you do at a party if you weren't worried?",
            "When did you first notice feeling this way around people?",
        ],
        "follow_ups": [
            "That I'm boring and weird.",
            "Probably at school, I was teased a lot.",
        ],
        "second_replies": [
            "That is a harsh story to carry into every room. What do the people who know you well say about you?",
            "Being teased at school can teach us to watch ourselves constantly, as if the teasing might start again. How does that old fear show up now?",
        ],
    },
    "trauma": {
        "openers": [
            "Loud noises make me jump out of my skin since the accident.",
            "I still have nightmares about what happened when I was a kid.",
            "I freeze whenever someone raises their voice, even if it's not at me.",
            "I was in a car crash six months ago and I can't drive on the motorway anymore.",
            "Sometimes I feel like I'm floating outside my body.",
        ],
        "details": [
            "I don't like talking about it, but it's always there in the background.",
            "I thought I had dealt with it years ago.",
            "My friends don't understand why I can't just get over it.",
        ],
        "reflections": [
            "Your nervous system learned that the world can be dangerous, and it is still trying to protect you.",
            "Freezing is one of the body's oldest survival responses; it is not a weakness.",
            "It sounds like what happened is still very present, even though it is in the past.",
        ],
        "suggestions": [
            "Grounding can help in the moment: naming five things you can see, feeling your feet on the floor, or holding something cold.",
            "Trauma-focused therapies such as EMDR or trauma-focused CBT have good evidence, and a trained therapist can go at your pace.",
            "You do not need to tell the whole story to anyone to start feeling safer; safety comes first.",
        ],
        "questions": [
            "What helps you feel a little safer when it happens?",
            "What happens in your body just before you freeze?",
            "Who in your life knows what you went through?",
        ],
        "follow_ups": [
            "Having my cat on my lap helps, weirdly.",
            "My heart pounds and I can't move.",
        ],
        "second_replies": [
            "That is not weird at all; warmth and weight can tell the body it is safe. When else do you feel that calm?",
            "A pounding heart and stillness are your body bracing itself. Would you be open to trying a grounding exercise together next time it starts?",
        ],
    },
    "anger": {
        "openers": [
            "I lose my temper over small things and I scare myself.",
            "I punched a wall last week and I'm worried about what I'll do next.",
            "People say I'm always angry but I don't feel it until it explodes.",
            "Traffic makes me so furious I shake.",
            "I get irritated with everyone lately, even my friends.",
        ],
        "details": [
            "Afterwards I feel ashamed and apologise, then it happens again.",
            "My dad had a bad temper and I promised myself I'd be different.",
            "It's worse when I haven't slept.",
        ],
        "reflections": [
            "It takes courage to admit that your anger frightens you.",
            "Anger that seems to come from nowhere often has been building quietly for a while.",
            "The cycle of exploding and then feeling ashamed is painful, and it shows you want things to change.",
        ],
        "suggestions": [
            "Learning your early warning signs, like a hot face or clenched jaw, gives you a moment to step away before it peaks.",
            "Taking a timeout, saying you need ten minutes and leaving the room, is a skill, not a failure.",
            "Anger often sits on top of other feelings like hurt or fear; noticing what is underneath can take some of its power away.",
        ],
        "questions": [
            "What does anger feel like in your body before it explodes?",
            "What do you think might be underneath the anger?",
            "What has helped you calm down in the past, even once?",
        ],
        "follow_ups": [
            "My jaw clenches and I get really hot.",
            "Maybe I feel disrespected a lot.",
        ],
        "second_replies": [
            "Those are useful signals: a clenched jaw and heat are your body warning you early. What could you do in the thirty seconds after you notice them?",
            "Feeling disrespected cuts deep for many people. Where did you first learn what respect should look like?",
        ],
    },
    "health worries": {
        "openers": [
            "I'm convinced every headache is a brain tumour.",
            "I was diagnosed with diabetes and I feel overwhelmed by it.",
            "I have chronic pain and people think I'm exaggerating.",
            "I'm waiting for biopsy results and I can't think about anything else.",
            "Since my heart scare I'm afraid to exercise.",
        ],
        "details": [
            "The doctor said I'm fine but I don't believe it.",
            "I've had to cut back at work and money is tight.",
            "Nobody can see the pain so they assume it isn't real.",
        ],
        "reflections": [
            "Waiting for results is one of the hardest kinds of uncertainty, because there is nothing to do but wait.",
            "Living with pain that others cannot see can be isolating as well as exhausting.",
            "A new diagnosis changes a lot at once, and feeling overwhelmed is a natural response.",
        ],
        "suggestions": [
            "It can help to set a fixed worry time each day and gently postpone health worries until then.",
            "Writing down questions before appointments helps many people feel more in control of their care.",
            "Pacing, doing a little less on good days so there are fewer crashes, is a real strategy for chronic pain.",
        ],
        "questions": [
            "What goes through your mind when the worry starts?",
            "How has this changed your day-to-day life?",
            "Who supports you with your health at the moment?",
        ],
        "follow_ups": [
            "I keep imagining the worst case and planning my funeral.",
            "I had to stop playing football, which was my whole social life.",
        ],
        "second_replies": [
            "When the mind runs to the worst case it can feel like preparing, but it mostly adds suffering now. What would you do today if you knew the results were fine?",
            "Losing football means losing the game and the people together. Is there a way to stay connected to that group?",
        ],
    },
    "addiction": {
        "openers": [
            "I relapsed last weekend after six months sober.",
            "I drink a bottle of wine most nights to unwind.",
            "I've been gambling more and hiding it from my wife.",
            "I can't stop vaping even though I want to.",
            "I smoke weed every night and I don't think I can sleep without it.",
        ],
        "details": [
            "I tell myself I'll stop on Monday and then Monday comes.",
            "My friends all drink so it feels normal.",
            "I owe money that I haven't told anyone about.",
        ],
        "reflections": [
            "A relapse can feel like losing everything, but the months you stayed sober still count.",
            "It sounds like the drinking has become the main way you let go of the day.",
            "Hiding something from someone you love carries its own weight on top of the habit itself.",
        ],
        "suggestions": [
            "It can help to look at what happened in the hours before the urge, without judging it, to learn your triggers.",
            "Support groups, or a conversation with a doctor, can make cutting down safer and less lonely.",
            "Replacing the ritual, something warm to drink, a walk, a call, gives the evening a different shape.",
        ],
        "questions": [
            "What was happening in the hours before you drank?",
            "What do you get from it that you would miss?",
            "What would be different in your life if you cut back?",
        ],
        "follow_ups": [
            "I was at my cousin's wedding and everyone was drinking.",
            "It's the only time my head goes quiet.",
        ],
        "second_replies": [
            "Weddings are hard; there is pressure, emotion and drink everywhere. What might you plan differently for the next big event?",
            "Wanting your head to go quiet makes a lot of sense. What else has ever given you even a little of that quiet?",
        ],
    },
    "life transitions": {
        "openers": [
            "I just retired and I don't know what to do with myself.",
            "I moved to a new country for work and I feel lost.",
            "My youngest left for university and the house feels empty.",
            "I graduated six months ago and I still don't have a job.",
            "I'm turning forty and I feel like I've wasted my life.",
        ],
        "details": [
            "I don't speak the language well yet, so even shopping is stressful.",
            "My whole identity was being a parent.",
            "Everyone on LinkedIn seems to be doing amazing things.",
        ],
        "reflections": [
            "Big transitions take away the routines that told us who we were, even when the change is a good one.",
            "An empty house after years of family noise can feel like a loss, not just a change.",
            "It sounds like you are measuring yourself against a timeline that is not really yours.",
        ],
        "suggestions": [
            "Building a simple daily structure, even a fixed time to get up and one planned activity, can steady the first months.",
            "It can help to look for one community, a class, a club, a faith group, to give the week some anchors.",
            "Writing down what you have actually done in the past ten years often tells a different story than the one in your head.",
        ],
        "questions": [
            "What gave your days meaning before this change?",
            "What did you imagine this stage of life would feel like?",
            "What is one thing you would like to try now that you have the chance?",
        ],
        "follow_ups": [
            "I thought I'd feel free, but I just feel useless.",
            "I always wanted to learn to play the piano.",
        ],
        "second_replies": [
            "Freedom without purpose can feel a lot like uselessness at first. Where do you still feel useful, even a little?",
            "That sounds like something worth giving yourself. What would a first step toward lessons be?",
        ],
    },
    "exam stress": {
        "openers": [
            "My finals are in three weeks and I can't concentrate at all.",
            "I freeze in exams even when I know the material.",
            "My parents expect me to get into medicine and I'm terrified of letting them down.",
            "I failed my driving test again and I feel so stupid.",
            "I study all day but nothing goes in.",
        ],
        "details": [
            "I cry when I open my notes.",
            "Everyone in my class seems to be coping better than me.",
            "I haven't seen my friends in weeks because I feel guilty if I'm not studying.",
        ],
        "reflections": [
            "It sounds like the pressure is so high that it is getting in the way of the studying itself.",
            "Freezing when you know the material is frustrating, and it is often anxiety, not a lack of knowledge.",
            "Carrying your parents' hopes as well as your own makes every exam feel enormous.",
        ],
        "suggestions": [
            "Short blocks of study with real breaks, such as twenty-five minutes on and five off, usually beat long hours of staring at notes.",
            "Practising under exam-like conditions a few times can take some of the shock out of the real thing.",
            "Seeing friends for an hour is not time wasted; rest helps memory consolidate.",
        ],
        "questions": [
            "What goes through your mind when you sit down to study?",
            "What would happen if the exam did not go the way you hoped?",
            "What do you want for yourself, apart from what your parents want?",
        ],
        "follow_ups": [
            "I think they'd be disappointed and I'd feel like a failure.",
            "I actually want to study history, not medicine.",
        ],
        "second_replies": [
            "Disappointing the people we love is a painful fear. Have you ever seen them be disappointed and still love you?",
            "That is an important thing to know about yourself. What stops you from telling them?",
        ],
    },
    "perfectionism": {
        "openers": [
            "I spend hours rewriting emails because they have to be perfect.",
            "If I can't do something perfectly I'd rather not do it at all.",
            "I got ninety-five percent on a test and all I can think about is the five.",
            "I'm always the last to leave the office because I keep checking my work.",
            "I procrastinate on everything important and then panic.",
        ],
        "details": [
            "My boss says my work is great but it never feels good enough.",
            "I've started avoiding new hobbies because I'm bad at them at first.",
            "I feel like any mistake means people will see the real me.",
        ],
        "reflections": [
            "It sounds like the bar keeps moving, so nothing you do ever gets to count.",
            "Avoiding things you cannot do perfectly keeps you safe from failing, but it also keeps you from enjoying them.",
            "When one small mistake outweighs everything that went well, success stops feeling like success.",
        ],
        "suggestions": [
            "Some people practise \"good enough\" on purpose, sending an email after one read-through, and notice what actually happens.",
            "Setting a time limit for a task before starting it can keep checking from expanding forever.",
            "It may help to ask what standard you would hold a colleague to, and try that one for yourself.",
        ],
        "questions": [
            "What do you fear would happen if something you did was only good enough?",
            "Where do you think these high standards came from?",
            "What would you try if you knew you would not be judged?",
        ],
        "follow_ups": [
            "People would think I'm lazy or incompetent.",
            "My dad only noticed me when I got top marks.",
        ],
        "second_replies": [
            "That is a heavy fear to carry into every task. Has anyone ever actually called you lazy?",
            "Learning that attention comes with top marks can make anything less feel dangerous. How does that show up in your work now?",
        ],
    },
    "caregiving": {
        "openers": [
            "I look after my mum who has dementia and I'm exhausted.",
            "My husband had a stroke and I've become his full-time carer.",
            "I feel guilty for wanting a break from looking after my disabled son.",
            "My dad keeps forgetting who I am and it breaks my heart.",
            "I'm juggling a job, my kids and my elderly parents and I'm falling apart.",
        ],
        "details": [
            "My siblings live far away and don't help.",
            "I haven't had a night out in two years.",
            "Sometimes I feel angry at her and then hate myself for it.",
        ],
        "reflections": [
            "Caring for someone you love day after day is one of the most demanding jobs there is, and exhaustion is a natural result.",
            "Wanting a break does not mean you love them any less.",
            "Watching a parent forget you is a kind of grief that happens while they are still here.",
        ],
        "suggestions": [
            "Respite care, even a few hours a week, exists so carers can rest; it is worth asking your local services about it.",
            "Carers' support groups can be one of the few places where people truly understand what you are going through.",
            "Telling your siblings specifically what you need, like one weekend a month, is more likely to get help than hoping they offer.",
        ],
        "questions": [
            "What support do you have for yourself right now?",
            "When did you last do something just for you?",
            "What would help most this week?",
        ],
        "follow_ups": [
            "I can't remember. Maybe a haircut last spring.",
            "Just one full night of sleep would change everything.",
        ],
        "second_replies": [
            "A haircut nearly a year ago is a long time to go without anything for yourself. What would it take to make room for one small thing this month?",
            "Sleep is not a luxury for a carer; it is what keeps you going. Who could cover one night so you can sleep?",
        ],
    },
}

# Said by a counsellor in any topic: to open a reply or to normalise, before what is specific.
OPENINGS = [
    "Thank you for sharing this.",
    "I'm glad you reached out about this.",
    "That sounds really hard.",
    "I can hear how much this is weighing on you.",
    "You are not alone in feeling this way.",
    "It takes courage to put this into words.",
]
NORMALISING = [
    "A lot of people go through something similar, and it says nothing bad about who you are.",
    "What you are feeling is an understandable response to what you are going through.",
    "There is no right way to feel about this.",
    "It makes sense that this has been on your mind so much.",
]
CLOSINGS = [
    "If it ever starts to feel like too much, a counsellor or your doctor can help you work through it at your own pace.",
    "Be patient with yourself; change like this usually comes in small steps.",
    "You do not have to figure all of this out at once.",
    "Talking it through with a therapist can help you find what fits your situation.",
]
